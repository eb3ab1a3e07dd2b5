"""``GET /metrics``: the service's counters in Prometheus' text format (``prometheus_client``).

    charlstm_http_requests_total{route, status}   HTTP responses, by route (the app's path, the
                                                  mount for /static/..., "other" for an unknown
                                                  path) and status code (a stream counts once, as
                                                  its response begins)
    charlstm_generated_characters_total{model}    characters generated and sent to clients (what
                                                  the replies' texts hold, echoed prompts not)
    charlstm_prompt_characters_total{model}       prompt characters the model read, once per
                                                  generation however many samples it has
    charlstm_live_streams                         samples generating now: the slots taken,
                                                  read when scraped
    charlstm_queue_refusals_total                 requests refused because every slot was busy
                                                  (503 with Retry-After)
    charlstm_scheduler_step_seconds{model}        histogram: how long one batched step of a
                                                  scheduler takes (sampling every live row,
                                                  handing the text out, the model's step);
                                                  not on the per-request path

Off the hot path: the scheduler observes one duration per step, and a generation adds its
characters once per flush of its text (at most 25 a second), never per character; the live
streams gauge costs nothing until a scrape reads it. Each app has a registry of its own (not
prometheus_client's global one), so several apps in one process (tests build many) each count
their own, and the process metrics of the global registry are not served.
"""

# No ``from __future__ import annotations``: see schemas.py.

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from charlstm.serve import missing_extra

try:
    from fastapi import FastAPI, Response
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.exposition import generate_latest
    from starlette.routing import Mount
except ModuleNotFoundError as exc:  # the optional extra is missing: say how to get it
    raise missing_extra(exc) from None

# A step of a tiny model on a CPU takes ~0.1 ms, of 16 streams of a 2 x 512 model a few ms.
STEP_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)
OTHER = "other"  # the route label of a path the app does not serve: a scanner must not add labels


@dataclass(frozen=True)
class ModelMeters:
    """One model's children of the labelled metrics, looked up once (``labels()`` takes a lock)."""

    generated: Counter
    prompt: Counter
    step_seconds: Histogram


class ServeMetrics:
    """One service's metrics, in a registry of its own."""

    def __init__(self, live_streams: Callable[[], float]):
        """``live_streams()``: the samples generating now, called when a scrape reads the gauge."""
        self.registry = CollectorRegistry()
        own = {"registry": self.registry}
        self.requests = Counter("charlstm_http_requests", "HTTP responses, by route and status code.",
                                ["route", "status"], **own)
        self.generated = Counter("charlstm_generated_characters", "Characters generated and sent.",
                                 ["model"], **own)
        self.prompt = Counter("charlstm_prompt_characters", "Prompt characters read, once a generation.",
                              ["model"], **own)
        self.live = Gauge("charlstm_live_streams", "Samples generating now (slots taken).", **own)
        self.live.set_function(live_streams)
        self.refusals = Counter("charlstm_queue_refusals", "Requests refused (503): every slot was busy.",
                                **own)
        self.step_seconds = Histogram("charlstm_scheduler_step_seconds", "One batched step of a scheduler.",
                                      ["model"], buckets=STEP_BUCKETS, **own)

    def model(self, name: str) -> ModelMeters:
        return ModelMeters(self.generated.labels(name), self.prompt.labels(name),
                           self.step_seconds.labels(name))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def add_metrics(app: FastAPI, metrics: ServeMetrics) -> None:
    """``GET /metrics`` on ``app``, and every response counted (call it once the routes are in)."""

    @app.get("/metrics", include_in_schema=False)
    async def scrape() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(CountResponses, metrics=metrics, routes=app.router.routes)


class CountResponses:
    """ASGI middleware: each response counted by route and status as it begins.

    A 503 with Retry-After (every slot was busy) is a queue refusal too; a 503 without it (the
    server is shutting down) is not.
    """

    def __init__(self, app: Any, *, metrics: ServeMetrics, routes: list[Any]):
        self.app, self.metrics, self.routes = app, metrics, routes
        self._paths: set[str] | None = None  # the routes' paths, gathered at the first request
        self._mounts: tuple[str, ...] = ()

    def route(self, path: str) -> str:
        if self._paths is None:  # the routes are all in by the first request
            self._paths = {r.path for r in self.routes if not isinstance(r, Mount)}
            self._mounts = tuple(r.path for r in self.routes if isinstance(r, Mount))
        if path in self._paths:
            return path
        return next((m for m in self._mounts if path.startswith(m + "/")), OTHER)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route, began = self.route(scope["path"]), False

        async def counted(message: dict[str, Any]) -> None:
            nonlocal began
            if message["type"] == "http.response.start" and not began:
                began = True
                status = message["status"]
                self.metrics.requests.labels(route, str(status)).inc()
                headers = message.get("headers", ())
                if status == 503 and any(name.lower() == b"retry-after" for name, _ in headers):
                    self.metrics.refusals.inc()
            await send(message)

        try:
            await self.app(scope, receive, counted)
        except Exception:  # the server's outer handler answers 500
            if not began:
                self.metrics.requests.labels(route, "500").inc()
            raise
