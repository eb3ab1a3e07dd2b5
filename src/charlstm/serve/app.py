"""The HTTP service: a FastAPI app over loaded models, with streamed generation and a web page.

    GET  /                     the web page (web/index.html with its script and style sheet)
    GET  /healthz              liveness, the models served, samples generating
    GET  /v1/models            the models: OpenAI's list ({object, data}) plus names, default, limits
    GET  /v1/model?model=NAME  one model's facts: config, vocabulary, parameters, best bits/char
    POST /v1/generate          whole samples, with the seed used, finish reasons and timing
                               (a records model: whole items, with label and novelty; items_api.py)
    POST /v1/generate/stream   Server-Sent Events: start, text (new characters), done or error
    POST /v1/completions       OpenAI's completions API (see openai_api.py), with logprobs (logprobs.py)
    POST /tokenize             {model, prompt} -> {tokens: [character ids], count} (tokens.py)
    POST /detokenize           {model, tokens} -> {prompt}
    GET  /metrics              Prometheus' text format: requests, characters, streams, refusals (metrics.py)
    GET  /openapi.json         the API's schema (no /docs page: it would load its scripts from a CDN)
    HEAD on each GET above     as GET, without the body

Each model is loaded, and its facts gathered, once at start-up: the service lists, describes
and serves what it loaded, so a training run that goes on (pruning or replacing the checkpoint
served) changes nothing here. Only a window model's default prompt reads the run's files again,
its prepared text, which training leaves in place.

Torch work never runs on the event loop: a stream model's generations are stepped together by
its scheduler thread, a window model's each on a worker thread (worker.py). A generation stops
when its client goes: a stream's response stops it however it ends, and a whole request's
handler watches ``request.is_disconnected()`` while it waits; the app stops every generation
when the server shuts down.

Every refusal is JSON ``{"error": message, "field": the request field at fault, ...}``: 404
for an unknown model, 422 for a bad or over-limit field (with pydantic's ``detail``: type,
place and message, never the offending input, so a reply stays small) or prompt characters
outside the vocabulary (with ``unknown_characters``), 503 with Retry-After when every slot is busy.
"""

# No ``from __future__ import annotations``: see schemas.py.

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

from charlstm.config.sample import SampleConfig
from charlstm.errors import ConfigError
from charlstm.generation.threads import server_threads
from charlstm.model.runtime import resolve_device
from charlstm.serve import missing_extra
from charlstm.serve.jobs import ApiError, Job
from charlstm.serve.schemas import (
    ErrorResponse,
    GenerateResponse,
    Health,
    ModelInfo,
    ModelList,
    ServeLimits,
    request_model,
    stop_list,
)
from charlstm.serve.transport import HeadAsGet, listen
from charlstm.serve.worker import ServedModel, Service

try:
    import uvicorn
    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from charlstm.serve import items_api, openai_api, tokens
    from charlstm.serve.events import EventStream, collect, first_event, merged_events, sse
    from charlstm.serve.items import is_records
    from charlstm.serve.metrics import add_metrics
except ModuleNotFoundError as exc:  # the optional extra is missing: say how to get it
    raise missing_extra(exc) from None

__all__ = ["ServeLimits", "create_app", "model_paths", "run_server"]

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_ERROR_DETAILS = 10  # pydantic errors listed in a 422, each without the input that failed
# The page loads nothing but its own files; this makes the browser hold it to that.
PAGE_CSP = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'"
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in [(404, "No model of that name"), (422, "A field is invalid or over a limit"),
                       (503, "Every generation slot is busy; retry after Retry-After seconds")]
}


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def model_paths(run: Path | None, specs: list[str]) -> dict[str, Path]:
    """``RUN`` (named after itself) and ``NAME=PATH`` specs -> {name: path}, in order."""
    models: dict[str, Path] = {}
    if run is not None:
        models[Path(run).resolve().name.removesuffix(".safetensors")] = Path(run)
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name.strip() or not path:
            raise ConfigError(f"--model takes NAME=PATH, not {spec!r}")
        if name in models:
            raise ConfigError(f"two models are named {name!r}; give each its own NAME")
        models[name] = Path(path)
    if not models:
        raise ConfigError("give a run folder or checkpoint to serve, or --model NAME=PATH")
    return models


def _field_of(error: dict[str, Any]) -> str:
    """pydantic's location -> the request field: ('body', 'length') -> 'length'; bad JSON -> 'body'."""
    loc = [str(part) for part in error.get("loc", ())]
    if error.get("type") == "json_invalid" or len(loc) < 2:
        return loc[0] if loc else "body"
    return ".".join(loc[1:])


def _message(error: dict[str, Any]) -> str:
    """pydantic's message, less the "Value error, " it puts before a validator's own words."""
    if error.get("type") == "value_error" and "error" in error.get("ctx", {}):
        return str(error["ctx"]["error"])
    return str(error.get("msg"))


def validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as small JSON: type, place and message; never the input, which may be huge or NaN."""
    return [{"type": str(e.get("type")), "loc": [str(p) for p in e.get("loc", ())], "msg": _message(e)}
            for e in exc.errors()[:MAX_ERROR_DETAILS]]


def _add_error_handlers(app: FastAPI) -> None:
    """Every refusal as the JSON error body, whoever raised it."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        if openai_api.is_openai(request):
            return openai_api.error_response(exc)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_details(exc)
        message = "; ".join(f"{_field_of(e)}: {e['msg']}" for e in errors)
        error = ApiError(422, message, _field_of(errors[0]) if errors else None, detail=errors)
        return await _api_error(request, error)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return await _api_error(request, ApiError(exc.status_code, str(exc.detail), headers=exc.headers))


def create_app(models: Mapping[str, str | Path], limits: ServeLimits | None = None, *,
               device: str = "cpu", batching: bool = True) -> FastAPI:
    """The app serving ``models`` ({name: run folder or checkpoint}, the first is the default).

    ``batching=False`` serves every model on the per-request path (a thread per generation), for comparison.
    """
    limits = limits or ServeLimits()
    service = Service(models, limits, device, batching=batching)
    app = _new_app(service)
    _add_page(app)
    _add_model_routes(app, service, limits)
    _add_generate_routes(app, service, request_model(limits))
    openai_api.add_routes(app, service, limits)
    tokens.add_routes(app, service, limits)
    add_metrics(app, service.metrics)  # last: it counts the responses of every route above
    return app


def _new_app(service: Service) -> FastAPI:
    """The app around ``service``, with its error handlers and HEAD, and no routes yet."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        service.stop_all()  # a generation nobody will read (its client's task is gone) ends now

    # No /docs or /redoc: FastAPI's pages load their scripts from a CDN, and a server here may
    # have no internet; the schema they would show is at /openapi.json.
    app = FastAPI(title="charlstm", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Generate text from character-level LSTM language models.")
    app.state.service = service
    _add_error_handlers(app)
    app.add_middleware(HeadAsGet)
    return app


def _add_page(app: FastAPI) -> None:
    """GET / and the page's own files under /static."""
    page = (resources.files("charlstm.serve") / "web" / "index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_CSP})

    app.mount("/static", StaticFiles(packages=[("charlstm.serve", "web")]), name="static")


def _add_model_routes(app: FastAPI, service: Service, limits: ServeLimits) -> None:
    """/healthz, /v1/models and /v1/model: what is served, from the facts gathered at start-up."""

    @app.get("/healthz", response_model=Health)
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "models": list(service.models), "active_generations": service.active,
                "max_concurrent": limits.max_concurrent}

    @app.get("/v1/models", response_model=ModelList)
    async def list_models() -> dict[str, Any]:
        return {**openai_api.model_list(service), "models": list(service.models), "default": service.default,
                "limits": asdict(limits)}

    @app.get("/v1/model", response_model=ModelInfo, responses={404: ERRORS[404]})
    async def model_info(model: str | None = Query(None, description="A served model (default: the first).")):
        return service.model(model).facts


def _add_generate_routes(app: FastAPI, service: Service, GenerateRequest: type) -> None:
    """POST /v1/generate (whole samples) and /v1/generate/stream (Server-Sent Events).

    A records model's requests generate whole items (items_api.py).
    """

    def start(served: ServedModel, config: SampleConfig, body: Any) -> Job:
        return service.start(served, body.prompt, config, stop_list(body.stop), asyncio.get_running_loop())

    @app.post("/v1/generate", response_model=GenerateResponse, responses=ERRORS)
    async def generate_whole(body: GenerateRequest, request: Request) -> Any:
        served, config = service.prepare(body)
        if is_records(served):
            return await items_api.whole(service, served, body, config, request)
        job = start(served, config, body)
        whole = await collect(request, job)
        if whole is None:  # the client went: nobody reads a reply
            return JSONResponse({"error": "the client went away", "field": None}, status_code=499)
        begun, texts, done = whole
        elapsed = done["elapsed_s"]
        return GenerateResponse(
            model=begun["model"], prompt=begun["prompt"], texts=texts, seed=begun["seed"],
            finish_reasons=done["finish_reasons"], characters=done["characters"], elapsed_s=elapsed,
            chars_per_s=round(done["characters"] / elapsed, 1) if elapsed > 0 else 0.0,
        ).model_dump()

    @app.post("/v1/generate/stream", response_class=StreamingResponse, responses={
        200: {"content": {"text/event-stream": {}},
              "description": "Events: start {model, prompt, seed, length, num_samples}; text {delta: [one "
                             "string per sample]}; done {characters, elapsed_s, first_char_s, stopped, "
                             "finish_reasons}; error {error, field}. A records model's items add item "
                             "{index, text, label, novel, complete, finish_reason} events, and items, "
                             "drawn and new to done (no text events with new_only)."},
        **ERRORS})
    async def generate_stream(body: GenerateRequest, request: Request) -> StreamingResponse:
        served, config = service.prepare(body)
        if is_records(served):
            return items_api.stream(service, served, body, config, request)
        job = start(served, config, body)
        first = await first_event(job, service)

        async def body_events() -> AsyncIterator[str]:
            yield sse(*first)
            async for batch in merged_events(request, [job]):
                yield "".join(sse(kind, payload) for _, kind, payload in batch)

        return EventStream(body_events(), [job], service)


def run_server(models: Mapping[str, str | Path], limits: ServeLimits | None = None, *,
               host: str = "127.0.0.1", port: int = 8000, device: str = "cpu",
               log_level: str = "info", torch_threads: int | None = None, batching: bool = True) -> None:
    """Serve ``models`` until interrupted.

    ``torch_threads`` None chooses, as ``generation.threads.server_threads`` says: torch's own
    count with batching, one thread without.
    """
    device = str(resolve_device(device))  # a missing or unknown device fails first, in one line
    if torch_threads is None:
        torch_threads = server_threads(batching)
    if torch_threads is not None:
        import torch

        torch.set_num_threads(torch_threads)
    sock = listen(host, port)  # before loading models: a taken port fails at once
    app = create_app(models, limits, device=device, batching=batching)
    if host not in LOOPBACK:
        log.warning("listening on %s: anyone who can reach this address can use the models", host)
    shown = f"[{host}]" if ":" in host else host
    log.info("serving %s at http://%s:%d/ (API schema at /openapi.json)", ", ".join(models), shown,
             sock.getsockname()[1])
    config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
