"""The generation side of the HTTP service: loaded models, slots and worker threads.

Nothing here knows HTTP beyond ``ApiError`` (a status, a message, the field at fault); serve.py
turns it into a response. Each generation runs on the ``Service``'s thread pool, which has
``max_concurrent`` threads and a semaphore with as many slots: a request that finds no free
slot is refused at once (503, Retry-After) rather than queued behind long streams. The worker
frees its slot when the generation really ends, so the limit counts every running generation,
including one whose client has just gone.

A stream's worker hands text to the event loop through an asyncio queue, batched by time
(``FLUSH_INTERVAL_S``) so a fast model does not wake the loop once per character, and checks
a stop flag between characters, which the response sets when its client goes away.
"""

# No ``from __future__ import annotations``: see serve_schemas.py.

import asyncio
import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from charlstm.config.sample import SampleConfig
from charlstm.errors import CharLSTMError, ConfigError, CorpusError, UnknownCharactersError
from charlstm.generation.generators import collect_samples, generate
from charlstm.generation.sampling import draw_seed
from charlstm.model.loss import bits_per_char
from charlstm.runs.loading import LoadedModel, load_model, run_info
from charlstm.serve.schemas import GenerateRequestBase, GenerateResponse, ModelInfo, ServeLimits

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.02  # at most ~50 events a second per stream: smooth to watch, cheap to serve
RETRY_AFTER_S = 1


class ApiError(Exception):
    """A request the service refuses: HTTP status, a message, the field at fault."""

    def __init__(self, status: int, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(message)
        self.status, self.field, self.headers, self.extra = status, field, headers, extra

    def body(self) -> dict[str, Any]:
        return {"error": str(self), "field": self.field, **self.extra}


def api_error(exc: CharLSTMError) -> ApiError:
    """A library error met while generating, as the 422 the client should get."""
    if isinstance(exc, UnknownCharactersError):  # its message names the request's own field
        return ApiError(422, str(exc), "prompt", unknown_characters=exc.unknown)
    # After validation, the only text a request brings is its prompt.
    return ApiError(422, str(exc), "prompt" if isinstance(exc, CorpusError) else None)


def model_facts(name: str, loaded: LoadedModel) -> dict[str, Any]:
    """What ``GET /v1/model`` says about a model, gathered once at start-up."""
    summary = run_info(loaded.path)  # headers and metrics only: the weights are loaded once
    meta, metric = summary.meta, summary.meta.metric
    bits = None
    if summary.best_val is not None:
        bits = {"split": "val", "value": summary.best_val["val_bits_per_char"]}
    elif metric is not None:  # a checkpoint away from its run folder
        bits = {"split": metric.name.removesuffix("_loss"), "value": bits_per_char(metric.value)}
    record = meta.to_json()
    return ModelInfo(
        name=name, checkpoint=summary.checkpoint.name, framing=str(meta.train_config.framing),
        vocab_size=len(meta.vocab), vocab=list(meta.vocab), parameters=summary.parameters,
        bits_per_char=bits, best_val=summary.best_val, last_eval=meta.last_eval,
        progress=record["progress"],
        config={part: record[f"{part}_config"] for part in ("model", "train", "corpus")},
    ).model_dump()


@dataclass(frozen=True)
class ServedModel:
    name: str
    loaded: LoadedModel
    facts: dict[str, Any]


@dataclass
class StreamJob:
    """One stream: the worker emits (kind, payload) events into ``queue`` on the event loop."""

    loop: asyncio.AbstractEventLoop
    stop: threading.Event
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)

    def emit(self, kind: str, payload: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (kind, payload))
        except RuntimeError:  # the event loop is closed: the server is gone, and so is the client
            self.stop.set()


class Service:
    """The loaded models and the worker threads that generate from them."""

    def __init__(self, models: Mapping[str, str | Path], limits: ServeLimits, device: str):
        if not models:
            raise ConfigError("give at least one model to serve")
        self.limits = limits
        self.models: dict[str, ServedModel] = {}
        for name, path in models.items():
            loaded = load_model(Path(path), device)
            self.models[name] = ServedModel(name, loaded, model_facts(name, loaded))
            log.info("loaded %s from %s", name, loaded.path)
        self.default = next(iter(self.models))
        # One model serves every thread: it is in eval mode and each call makes its own state.
        self.pool = ThreadPoolExecutor(limits.max_concurrent, thread_name_prefix="charlstm-generate")
        self._slots = threading.BoundedSemaphore(limits.max_concurrent)
        self._running: set[threading.Event] = set()  # the stop flags of running generations
        self._lock = threading.Lock()

    @property
    def active(self) -> int:
        return len(self._running)

    def model(self, name: str | None) -> ServedModel:
        if name is None:
            return self.models[self.default]
        if name not in self.models:
            raise ApiError(404, f"no model named {name!r}; serving: {', '.join(self.models)}", "model")
        return self.models[name]

    def prepare(self, body: GenerateRequestBase) -> tuple[ServedModel, SampleConfig]:
        """The model and sampling settings a request asks for; a missing seed is drawn here, to report."""
        served = self.model(body.model)
        if body.unknown == "replace" and body.replacement not in served.loaded.vocab.index:
            raise ApiError(422, f"replacement {body.replacement!r} is not in the model's vocabulary",
                           "replacement")
        seed = body.seed if body.seed is not None else draw_seed()
        settings = body.model_dump(exclude={"model", "prompt"})
        try:
            return served, SampleConfig(**{**settings, "seed": seed})
        except ConfigError as exc:
            raise ApiError(422, str(exc)) from None

    def acquire(self) -> threading.Event:
        """A generation slot, as the stop flag its worker will watch; 503 when all are taken."""
        if not self._slots.acquire(blocking=False):
            raise ApiError(503, f"all {self.limits.max_concurrent} generation slots are busy; retry shortly",
                           headers={"Retry-After": str(RETRY_AFTER_S)})
        stop = threading.Event()
        with self._lock:
            self._running.add(stop)
        return stop

    def release(self, stop: threading.Event) -> None:
        with self._lock:
            self._running.discard(stop)
        self._slots.release()

    def stop_all(self) -> None:
        with self._lock:
            for stop in self._running:
                stop.set()

    def run_whole(self, served: ServedModel, prompt: str, config: SampleConfig,
                  stop: threading.Event) -> dict[str, Any]:
        """Worker thread: whole samples and timing."""
        try:
            started = time.perf_counter()
            prompt_text, steps = generate(served.loaded, prompt or None, config)
            texts = collect_samples(steps, config.num_samples, stop.is_set)
            elapsed = time.perf_counter() - started
            characters = sum(len(s) for s in texts)
            return GenerateResponse(
                model=served.name, prompt=prompt_text, texts=texts,
                seed=config.seed, characters=characters, elapsed_s=round(elapsed, 6),
                chars_per_s=round(characters / elapsed, 1) if elapsed > 0 else 0.0,
            ).model_dump()
        finally:
            self.release(stop)

    def run_stream(self, served: ServedModel, prompt: str, config: SampleConfig, job: StreamJob) -> None:
        """Worker thread: emit start, text batches, then done (or error), then end."""
        started = time.perf_counter()
        steps_done, first_char_s = 0, None
        try:
            prompt_text, steps = generate(served.loaded, prompt or None, config)
            job.emit("start", {"model": served.name, "prompt": prompt_text, "seed": config.seed,
                               "length": config.length, "num_samples": config.num_samples})
            pending: list[list[str]] = [[] for _ in range(config.num_samples)]
            last_flush = started
            for step in steps:
                for buffer, ch in zip(pending, step, strict=True):
                    buffer.append(ch)
                steps_done += 1
                now = time.perf_counter()
                if first_char_s is None:  # the first character goes out at once
                    first_char_s = now - started
                    flush = True
                else:
                    flush = now - last_flush >= FLUSH_INTERVAL_S
                if flush:
                    job.emit("text", {"delta": ["".join(b) for b in pending]})
                    pending = [[] for _ in range(config.num_samples)]
                    last_flush = now
                if job.stop.is_set():
                    break
            if pending[0]:
                job.emit("text", {"delta": ["".join(b) for b in pending]})
            elapsed = time.perf_counter() - started
            job.emit("done", {"characters": steps_done * config.num_samples, "elapsed_s": round(elapsed, 6),
                              "first_char_s": round(first_char_s or 0.0, 6), "stopped": job.stop.is_set()})
        except CharLSTMError as exc:
            job.emit("error", api_error(exc))
        except Exception:
            log.exception("generation from %s failed", served.name)
            job.emit("error", ApiError(500, "internal error: the generation failed (see the server log)"))
        finally:
            self.release(job.stop)
            job.emit("end", None)
