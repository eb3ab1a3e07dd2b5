"""``POST /v1/generate`` and ``/v1/generate/stream`` for a records model: whole items (items.py).

    whole   GenerateResponse: texts (each item's new text), finish_reasons ("stop" at the item's
            end), and items [{text, label, novel, complete}], drawn, new
    stream  start {model, prompt, seed, length, num_samples, items, new_only}
            text  {delta: [one string per item]}  (not with new_only: an item is shown once it
                                                   is known to be new)
            item  {index, text, label, novel, complete, finish_reason}, as each item is kept
            done  {characters, elapsed_s, first_char_s, stopped, finish_reasons, items, drawn, new}
            error {error, field}
"""

# No ``from __future__ import annotations``: see schemas.py.

from dataclasses import replace
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

from charlstm.config.sample import SampleConfig
from charlstm.serve.events import EventStream, sse
from charlstm.serve.items import ItemsRun, items_ask
from charlstm.serve.jobs import ApiError
from charlstm.serve.schemas import GenerateResponse, stop_list
from charlstm.serve.worker import ServedModel, Service


def start_items(service: Service, served: ServedModel, body: Any, config: SampleConfig) -> ItemsRun:
    """The request's items, drawing (ApiError for a bad label, prompt or count, or busy slots)."""
    count = body.items if body.items is not None else body.num_samples
    if body.items is not None and "num_samples" in body.model_fields_set and body.num_samples != count:
        raise ApiError(422, "give the number of items as items or as num_samples, not both", "num_samples")
    ask = items_ask(service, served, body.prompt, replace(config, num_samples=count), count=count,
                    label=body.label, new_only=body.new_only, stops=stop_list(body.stop))
    return ItemsRun(service, served, [ask])


async def whole(service: Service, served: ServedModel, body: Any, config: SampleConfig,
                request: Request) -> Any:
    """The items in one JSON body, once all are drawn."""
    run = start_items(service, served, body, config)
    done: dict[str, Any] | None = None
    try:
        async for batch in run.events(request):
            for _, kind, payload in batch:
                if kind == "error":
                    raise payload
                if kind == "done":
                    done = payload
    finally:
        run.close()
    if done is None:  # the client went: nobody reads a reply
        return JSONResponse({"error": "the client went away", "field": None}, status_code=499)
    elapsed = done["elapsed_s"]
    return GenerateResponse(
        model=served.name, prompt=run.draws[0].ask.prefix, texts=done["texts"], seed=config.seed,
        finish_reasons=done["finish_reasons"], characters=done["characters"], elapsed_s=elapsed,
        chars_per_s=round(done["characters"] / elapsed, 1) if elapsed > 0 else 0.0,
        items=done["items"], drawn=done["drawn"], new=done["new"],
    ).model_dump()


def stream(service: Service, served: ServedModel, body: Any, config: SampleConfig,
           request: Request) -> StreamingResponse:
    """The items as Server-Sent Events: their text as it comes, each item as it is kept, done."""
    run = start_items(service, served, body, config)
    ask = run.draws[0].ask
    start = {"model": served.name, "prompt": ask.prefix, "seed": config.seed, "length": config.length,
             "num_samples": ask.count, "items": ask.count, "new_only": ask.new_only}

    async def events() -> Any:
        yield sse("start", start)
        async for batch in run.events(request):
            yield "".join(sse(kind, _without_texts(kind, payload)) for _, kind, payload in batch)

    return EventStream(events(), run.jobs, service)


def _without_texts(kind: str, payload: Any) -> Any:
    """A done event without the items' new texts: the text events have carried them."""
    if kind != "done":
        return payload
    return {key: value for key, value in payload.items() if key != "texts"}
