"""The HTTP service: a FastAPI app over loaded models, with streamed generation and a web page.

    GET  /                     the web page (web/index.html with its script and style sheet)
    GET  /healthz              liveness, the models served, generations running
    GET  /v1/models            the models' names, the default one and the limits
    GET  /v1/model?model=NAME  one model's facts: config, vocabulary, parameters, best bits/char
    POST /v1/generate          whole samples, with the seed used and timing
    POST /v1/generate/stream   Server-Sent Events: start, text (new characters), done or error
    GET  /docs                 OpenAPI docs, as FastAPI makes them

Torch work never runs on the event loop: serve_worker.py runs each generation on a worker
thread. A stream's response stops its worker when it ends by any path: the client went away
(Starlette cancels the response, or ``request.is_disconnected()`` says so) or the generation
finished; the app stops every worker when the server shuts down.

Every refusal is JSON ``{"error": message, "field": the request field at fault, ...}``: 404
for an unknown model, 422 for a bad or over-limit field (with pydantic's ``detail``) or prompt
characters outside the vocabulary (with ``unknown_characters``), 503 with Retry-After when all
generation slots are busy.
"""

# No ``from __future__ import annotations``: see serve_schemas.py.

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

from charlstm.errors import CharLSTMError, ConfigError
from charlstm.serve.schemas import (
    ErrorResponse,
    GenerateResponse,
    Health,
    ModelInfo,
    ModelList,
    ServeLimits,
    request_model,
)
from charlstm.serve.worker import ApiError, Service, StreamJob, api_error

try:
    import uvicorn
    from fastapi import FastAPI, Query, Request
    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ModuleNotFoundError as exc:  # the optional extra is missing: say how to get it
    raise ConfigError(
        f"serving needs the optional 'serve' extra ({exc.name} is not installed): "
        "pip install 'charlstm[serve]'"
    ) from None

__all__ = ["ServeLimits", "create_app", "model_paths", "run_server"]

log = logging.getLogger(__name__)

DISCONNECT_POLL_S = 0.5  # how often a stream waiting on a slow model checks its client is still there
LOOPBACK = ("127.0.0.1", "localhost", "::1")
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


def sse(kind: str, payload: Any) -> str:
    """One Server-Sent Event; JSON escapes newlines, so ``data`` is always one line."""
    if isinstance(payload, ApiError):
        payload = payload.body()
    return f"event: {kind}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def stream_events(request: Request, job: StreamJob, first: tuple[str, Any]) -> AsyncIterator[str]:
    """The events of a stream, until the worker ends or the client is found gone."""
    item: tuple[str, Any] | None = first
    while item is None or item[0] != "end":
        if item is not None:
            yield sse(*item)
        if await request.is_disconnected():
            return
        try:
            item = await asyncio.wait_for(job.queue.get(), DISCONNECT_POLL_S)
        except TimeoutError:
            item = None


class EventStream(StreamingResponse):
    """A stream's response, which stops its worker however it ends: done, client gone, cancelled.

    The flag is set here rather than in ``stream_events``: when Starlette cancels a response
    while it is sending, the body generator is left suspended, and its ``finally`` would run
    only when the garbage collector gets to it.
    """

    media_type = "text/event-stream"

    def __init__(self, request: Request, job: StreamJob, first: tuple[str, Any]):
        super().__init__(stream_events(request, job, first),
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.job = job

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.job.stop.set()


def _field_of(error: dict[str, Any]) -> str:
    """pydantic's location -> the request field: ('body', 'length') -> 'length'; bad JSON -> 'body'."""
    loc = [str(part) for part in error.get("loc", ())]
    if error.get("type") == "json_invalid" or len(loc) < 2:
        return loc[0] if loc else "body"
    return ".".join(loc[1:])


def _add_error_handlers(app: FastAPI) -> None:
    """Every refusal as the JSON error body, whoever raised it."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = jsonable_encoder(exc.errors())
        message = "; ".join(f"{_field_of(e)}: {e.get('msg', 'invalid')}" for e in errors)
        return error_response(ApiError(422, message, _field_of(errors[0]) if errors else None, detail=errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(ApiError(exc.status_code, str(exc.detail), headers=exc.headers))


def create_app(models: Mapping[str, str | Path], limits: ServeLimits | None = None, *,
               device: str = "cpu") -> FastAPI:
    """The app serving ``models`` ({name: run folder or checkpoint}, the first is the default)."""
    limits = limits or ServeLimits()
    service = Service(models, limits, device)
    page = (resources.files("charlstm.serve") / "web" / "index.html").read_text(encoding="utf-8")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        service.stop_all()  # a generation nobody will read (its client's task is gone) ends now

    app = FastAPI(title="charlstm", lifespan=lifespan,
                  description="Generate text from character-level LSTM language models.")
    app.state.service = service
    GenerateRequest = request_model(limits)

    _add_error_handlers(app)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_CSP})

    app.mount("/static", StaticFiles(packages=[("charlstm.serve", "web")]), name="static")

    @app.get("/healthz", response_model=Health)
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "models": list(service.models), "active_generations": service.active,
                "max_concurrent": limits.max_concurrent}

    @app.get("/v1/models", response_model=ModelList)
    async def list_models() -> dict[str, Any]:
        return {"models": list(service.models), "default": service.default, "limits": asdict(limits)}

    @app.get("/v1/model", response_model=ModelInfo, responses={404: ERRORS[404]})
    async def model_info(model: str | None = Query(None, description="A served model (default: the first).")):
        return service.model(model).facts

    @app.post("/v1/generate", response_model=GenerateResponse, responses=ERRORS)
    async def generate_whole(body: GenerateRequest) -> dict[str, Any]:
        served, config = service.prepare(body)
        future = service.pool.submit(service.run_whole, served, body.prompt, config, service.acquire())
        try:
            return await asyncio.wrap_future(future)
        except CharLSTMError as exc:
            raise api_error(exc) from None

    @app.post("/v1/generate/stream", response_class=StreamingResponse, responses={
        200: {"content": {"text/event-stream": {}},
              "description": "Events: start {model, prompt, seed, length, num_samples}; text {delta: [one "
                             "string per sample]}; done {characters, elapsed_s, first_char_s, stopped}; "
                             "error {error, field}."},
        **ERRORS})
    async def generate_stream(body: GenerateRequest, request: Request) -> StreamingResponse:
        served, config = service.prepare(body)
        job = StreamJob(asyncio.get_running_loop(), service.acquire())
        service.pool.submit(service.run_stream, served, body.prompt, config, job)
        try:
            first = await job.queue.get()
        except BaseException:  # cancelled while waiting: nobody will read this stream
            job.stop.set()
            raise
        if first[0] == "error":  # failed before the first character: a plain error response
            raise first[1]
        return EventStream(request, job, first)

    return app


def run_server(models: Mapping[str, str | Path], limits: ServeLimits | None = None, *,
               host: str = "127.0.0.1", port: int = 8000, device: str = "cpu",
               log_level: str = "info", torch_threads: int | None = 1) -> None:
    """Serve ``models`` until interrupted; ``torch_threads=None`` keeps torch's own thread count.

    One torch thread by default: a generation is a chain of tiny single-step ops, which gain
    nothing from intra-op threads, and several generations at once make those threads fight
    over the cores (measured: the first requests ran 10-50x slower with two threads on a busy
    two-core machine). Concurrency comes from the worker threads instead.
    """
    if torch_threads is not None:
        import torch

        torch.set_num_threads(torch_threads)
    app = create_app(models, limits, device=device)
    if host not in LOOPBACK:
        log.warning("listening on %s: anyone who can reach this address can use the models", host)
    shown = f"[{host}]" if ":" in host else host
    log.info("serving %s at http://%s:%d/ (API docs at /docs)", ", ".join(models), shown, port)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
