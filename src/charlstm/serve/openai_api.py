"""OpenAI's completions API over the served models, so its clients and tools work unchanged.

    POST /v1/completions   model, prompt (a string or a list), max_tokens, temperature, top_p, n,
                           stop, seed, stream (SSE chunks, then ``data: [DONE]``), echo, logprobs; and,
                           beyond OpenAI's fields, charlstm's top_k, unknown and replacement
    GET  /v1/models        {object: "list", data: [{id, object: "model", created, owned_by}]}

A token is a character: ``max_tokens`` counts new characters and ``usage`` counts characters.
``temperature`` 0 means greedy (the most likely character), as OpenAI's does. Each prompt of a
list is one generation of ``n`` samples; choice ``p * n + j`` is prompt p's sample j, and prompt
p > 0 draws from a seed derived from ``seed``. Errors come in OpenAI's shape, ``{"error":
{message, type, param, code}}``, with 400 for a bad field (where the native API says 422), 404,
and 503 with Retry-After when the slots are busy.

``logprobs`` (0-5): OpenAI's legacy logprobs object per choice, and per streamed chunk, under
the raw distribution (temperature 1; logprobs.py); with ``echo`` the prompt's come first.
``max_tokens`` 0 generates nothing and takes no slot: with echo and logprobs, it scores. Refused
(400) unless neutral: ``suffix`` (a left-to-right model cannot aim at a text after it),
``logit_bias``, ``presence_penalty`` and ``frequency_penalty`` (a penalty per character punishes
every common letter: ``dry_multiplier``, llama.cpp's DRY, is the repetition control that suits
characters). ``best_of`` (a multiple of n): each choice is the most likely of best_of / n draws;
``use_beam_search`` (vLLM's name): beam search of width best_of (default n), the n best kept.
Both run on the per-request path, and their texts come whole (one chunk when streamed).

A records model's choices are whole items (items.py): the prompt begins each, and a choice
ends at its item's end, ``finish_reason`` "stop", or after max_tokens characters, "length";
no start, end or label symbol is in any text. Their logprobs are refused (400): an item's
likelihood hangs on its label, drawn unseen; ``charlstm score`` scores items.
"""

# No ``from __future__ import annotations``: see schemas.py.

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from charlstm.config.sample import SampleConfig
from charlstm.errors import ConfigError
from charlstm.generation.sampling import sample_seed
from charlstm.serve.events import EventStream, merged_events, sse
from charlstm.serve.items import ItemsRun, is_records, items_ask
from charlstm.serve.jobs import ApiError, Job
from charlstm.serve.logprobs import CompletionLogprobs, Logprobs, nothing_generated, read_prompt
from charlstm.serve.openai_schema import completion_request
from charlstm.serve.schemas import ServeLimits, stop_list
from charlstm.serve.worker import ServedModel, Service

PATH = "/v1/completions"
ERROR_TYPES = {400: "invalid_request_error", 404: "invalid_request_error", 503: "server_overloaded"}


def is_openai(request: Request) -> bool:
    return request.url.path == PATH


def _status(exc: ApiError) -> int:
    return 400 if exc.status == 422 else exc.status  # a bad field is 400 in OpenAI's API


def error_body(exc: ApiError) -> dict[str, Any]:
    """An ApiError in OpenAI's shape."""
    status = _status(exc)
    return {"error": {"message": str(exc), "type": ERROR_TYPES.get(status, "server_error"),
                      "param": exc.field, "code": "model_not_found" if status == 404 else None}}


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(error_body(exc), status_code=_status(exc), headers=exc.headers)


def model_list(service: Service) -> dict[str, Any]:
    """The served models in the shape of OpenAI's ``GET /v1/models``, as loaded (no file is read)."""
    return {"object": "list", "data": [
        {"id": name, "object": "model", "created": served.created, "owned_by": "charlstm"}
        for name, served in service.models.items()]}


def _config(body: Any, prompt_index: int, seed: int) -> SampleConfig:
    # 0 (min_p, dry_multiplier) and 1 (top_p) are the APIs' "off"; charlstm's is unset.
    settings = {"length": body.max_tokens, "num_samples": body.n, "top_k": body.top_k,
                "top_p": body.top_p if body.top_p < 1 else None, "min_p": body.min_p or None,
                "dry_multiplier": body.dry_multiplier or None, "dry_base": body.dry_base,
                "dry_allowed_length": body.dry_allowed_length, "unknown": body.unknown,
                "replacement": body.replacement}
    try:
        if body.use_beam_search:  # the most likely continuations: no temperature, no seed
            return SampleConfig(**settings, beam=body.best_of or body.n)
        return SampleConfig(**settings, best_of=(body.best_of or body.n) // body.n,
                            temperature=body.temperature or 1.0, greedy=body.temperature == 0,
                            seed=sample_seed(seed, prompt_index))
    except ConfigError as exc:
        raise ApiError(422, str(exc)) from None


Events = AsyncIterator[list[tuple[int, str, Any]]]


def start(service: Service, body: Any, request: Request) -> tuple[ServedModel, list[str], list[Job], Events]:
    """Each prompt's generation started (all or none): the model, the prompts as read, the jobs, their events.

    A records model's choices are whole items: prompt p's n items are drawn as items.py draws them.
    """
    served = service.model(body.model)
    service.check_replacement(served, body.unknown, body.replacement)
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
    if is_records(served):
        if body.logprobs is not None:  # an item's likelihood hangs on its label, drawn unseen
            raise ApiError(422, "logprobs is not served for a model of a list; charlstm score scores "
                                "its items", "logprobs")
        stops = stop_list(body.stop)
        asks = [items_ask(service, served, prompt, _config(body, p, seed), count=body.n, stops=stops)
                for p, prompt in enumerate(prompts)]
        run = ItemsRun(service, served, asks)
        return served, [draws.ask.prefix for draws in run.draws], run.jobs, run.events(request)
    if body.max_tokens == 0:  # nothing to generate (scoring: echo and logprobs): no job, no slot
        read = [read_prompt(served, prompt, _config(body, p, seed)) for p, prompt in enumerate(prompts)]
        return served, read, [], nothing_generated(len(prompts), body.n)
    jobs = start_jobs(service, served, body, prompts, seed)
    return served, [job.prompt for job in jobs], jobs, merged_events(request, jobs)


def start_jobs(service: Service, served: ServedModel, body: Any, prompts: list[str], seed: int) -> list[Job]:
    """One generation per prompt, all started or none (their slots given back)."""
    jobs: list[Job] = []
    loop = asyncio.get_running_loop()
    try:
        for p, prompt in enumerate(prompts):
            jobs.append(service.start(served, prompt, _config(body, p, seed), stop_list(body.stop), loop))
    except BaseException:
        for job in jobs:
            service.forget(job)
        raise
    return jobs


def _choice(text: str, index: int, reason: str | None = None, logprobs: Logprobs | None = None
            ) -> dict[str, Any]:
    """One choice; charlstm's finish reasons in OpenAI's words (a cancelled one nobody reads)."""
    finish = None if reason is None else "stop" if reason == "stop" else "length"
    return {"text": text, "index": index, "logprobs": logprobs and logprobs.to_json(),
            "finish_reason": finish}


def add_routes(app: FastAPI, service: Service, limits: ServeLimits) -> None:
    """``POST /v1/completions`` on ``app`` (``GET /v1/models`` is the app's own, in both shapes)."""
    CompletionRequest = completion_request(limits)

    @app.post(PATH, response_model=None, responses={
        200: {"description": "A completion, or with stream: SSE chunks of one, then data: [DONE]."}})
    async def completions(body: CompletionRequest, request: Request) -> Any:
        served, prompts, jobs, events = start(service, body, request)
        n = body.n
        head = {"id": f"cmpl-{secrets.token_hex(12)}", "object": "text_completion",
                "created": int(time.time()), "model": served.name}
        prompt_chars = sum(map(len, prompts))
        scoring = None if body.logprobs is None else (  # only then is any text read again
            CompletionLogprobs(served.loaded, prompts, n, body.logprobs, body.echo))
        if body.stream:
            return EventStream(_chunks(events, prompts, body, head, prompt_chars, scoring), jobs, service)
        try:
            if scoring:
                await scoring.read_prompts()  # while the text is generated
            texts = [[""] * n for _ in prompts]
            reasons: list[list[str]] = [[] for _ in prompts]
            characters = 0
            ended = 0
            async for batch in events:
                for k, kind, payload in batch:
                    if kind == "error":
                        raise payload
                    if kind == "text":
                        texts[k] = [t + d for t, d in zip(texts[k], payload["delta"], strict=True)]
                    elif kind == "done":
                        reasons[k], ended = payload["finish_reasons"], ended + 1
                        characters += payload["characters"]
            if ended < len(prompts):  # the client went: nobody reads a reply
                return JSONResponse({"error": {"message": "the client went away"}}, status_code=499)
        finally:
            for job in jobs:
                service.forget(job)
        new = [text for samples in texts for text in samples]  # choice c: prompt c // n's sample c % n
        logprobs = await scoring.whole(new) if scoring else [None] * len(new)
        choices = [_choice((prompts[c // n] if body.echo else "") + text, c, reasons[c // n][c % n],
                           logprobs[c]) for c, text in enumerate(new)]
        return {**head, "choices": choices, "usage": _usage(prompt_chars, characters)}


def _usage(prompt_chars: int, characters: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_chars, "completion_tokens": characters,
            "total_tokens": prompt_chars + characters}


async def _chunks(events: Events, prompts: list[str], body: Any, head: dict[str, Any],
                  prompt_chars: int, scoring: CompletionLogprobs | None) -> AsyncIterator[str]:
    """The streamed completion: a chunk per text event and choice (with its characters' logprobs, if
    asked), one with each finish reason, [DONE]."""
    n, characters = body.n, 0
    empty = Logprobs() if scoring else None  # a finish chunk's

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
        return sse(None, {**head, "choices": choices, **extra})

    heads = await scoring.read_prompts() if scoring else [None] * (len(prompts) * n)
    if body.echo:
        yield chunk([_choice(prompts[c // n], c, logprobs=head) for c, head in enumerate(heads)])
    async for batch in events:
        out = []
        deltas = [{k * n + j: d for j, d in enumerate(payload["delta"]) if d}
                  for k, kind, payload in batch if kind == "text"]
        scored = iter(await scoring.read(deltas) if scoring else [{}] * len(deltas))
        for k, kind, payload in batch:
            if kind == "error":  # after the response began: the error as the last chunk
                yield "".join(out) + sse(None, error_body(payload))
                return
            if kind == "text":
                logprobs = next(scored)
                out.append(chunk([_choice(d, k * n + j, logprobs=logprobs.get(k * n + j))
                                  for j, d in enumerate(payload["delta"]) if d]))
            elif kind == "done":
                characters += payload["characters"]
                reasons = payload["finish_reasons"]
                out.append(chunk([_choice("", k * n + j, r, empty) for j, r in enumerate(reasons)]))
        yield "".join(out)
    if body.stream_options is not None and body.stream_options.include_usage:
        yield chunk([], usage=_usage(prompt_chars, characters))
    yield sse(None, "[DONE]")
