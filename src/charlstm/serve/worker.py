"""The generation side of the HTTP service: loaded models, slots, and who generates.

Nothing here knows HTTP beyond ``ApiError``; app.py turns it into a response. A stream model
(trained with state carried) gets a ``Scheduler``, which steps all its live generations together
in one batch; a window (tutorial) model re-reads a whole window per character, which batches
poorly, so each of its generations runs on a worker thread of its own (the per-request path,
also what ``batching=False`` gives every model, for comparison). A records model's requests are
whole items: items.py draws them as jobs on these same paths, a job per group of items that
share a start, each item ending at its end symbol (``jobs.ItemEnds``).

``--max-concurrent`` is the number of slots: samples generating at once, across the service.
A request takes one per sample before it starts and is refused at once (503, Retry-After) when
they are not free, rather than queued behind long streams; each slot is given back when its
sample really ends, so the limit counts every running generation, including one whose client
has just gone.
"""

# No ``from __future__ import annotations``: see schemas.py.

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from charlstm.config.sample import SampleConfig
from charlstm.errors import CharLSTMError, ConfigError, CorpusError, UnknownCharactersError
from charlstm.generation.beam import generate_beam
from charlstm.generation.generators import continue_ids, generate_best_of
from charlstm.generation.items import training_items
from charlstm.generation.prompts import prompt_ids
from charlstm.generation.sampling import draw_seed, sample_generators
from charlstm.model.loss import bits_per_char
from charlstm.model.runtime import resolve_device
from charlstm.runs.loading import LoadedModel, load_model, run_info
from charlstm.serve.jobs import ApiError, Job, Slots, TextOut
from charlstm.serve.metrics import ModelMeters, ServeMetrics
from charlstm.serve.scheduler import Scheduler
from charlstm.serve.schemas import GenerateRequestBase, ModelInfo, ServeLimits

log = logging.getLogger(__name__)

RETRY_AFTER_S = 1
RUNNING_TEXT = ("this model was trained on running text, not a list of items; items, label and new_only "
                "need a model trained on a list (charlstm train --records)")


def api_error(exc: CharLSTMError) -> ApiError:
    """A library error met while generating, as the 422 the client should get."""
    if isinstance(exc, UnknownCharactersError):  # its message names the request's own field
        return ApiError(422, str(exc), "prompt", unknown_characters=exc.unknown)
    # After validation, the only text a request brings is its prompt.
    return ApiError(422, str(exc), "prompt" if isinstance(exc, CorpusError) else None)


def model_facts(name: str, loaded: LoadedModel, known: frozenset[str] | None) -> dict[str, Any]:
    """What ``GET /v1/model`` says about a model, gathered once at start-up."""
    summary = run_info(loaded.path)  # headers and metrics only: the weights are loaded once
    meta, metric = summary.meta, summary.meta.metric
    bits = None
    if summary.best_val is not None:
        bits = {"split": "val", "value": summary.best_val["val_bits_per_char"]}
    elif metric is not None:  # a checkpoint away from its run folder
        bits = {"split": metric.name.removesuffix("_loss"), "value": bits_per_char(metric.value)}
    record = meta.to_json()
    items = None
    if meta.items is not None:  # a model of a list of things: what the page's "New items" offers
        items = {"format": str(meta.items.format), "labels": meta.items.labels,
                 "label_counts": meta.items.label_counts, "training_list": known is not None}
    return ModelInfo(
        name=name, checkpoint=summary.checkpoint.name, framing=str(meta.train_config.framing),
        vocab_size=len(meta.vocab), vocab=list(meta.vocab), parameters=summary.parameters,
        bits_per_char=bits, best_val=summary.best_val, last_eval=meta.last_eval,
        progress=record["progress"],
        config={part: record[f"{part}_config"] for part in ("model", "train", "corpus")}, items=items,
    ).model_dump()


@dataclass(frozen=True)
class ServedModel:
    """A model as loaded, with all the service says of it, gathered once at start-up.

    Nothing here re-reads the checkpoint: a training run that goes on may prune or replace it
    while the service still serves the weights it loaded.
    """

    name: str
    loaded: LoadedModel
    facts: dict[str, Any]
    scheduler: Scheduler | None  # None: the per-request path
    created: int  # the checkpoint's modification time when loaded, in seconds (OpenAI's ``created``)
    meters: ModelMeters  # its counters in the service's metrics (metrics.py)
    known: frozenset[str] | None = None  # a records model's training items, when its run's data is at hand


class Service:
    """The loaded models, the slots, the schedulers and worker threads that generate, and the metrics."""

    def __init__(self, models: Mapping[str, str | Path], limits: ServeLimits, device: str | torch.device, *,
                 batching: bool = True):
        if not models:
            raise ConfigError("give at least one model to serve")
        device = resolve_device(str(device))  # "auto" becomes a device; a missing one fails before loading
        self.limits, self.batching = limits, batching
        self.slots = Slots(limits.max_concurrent)
        self.metrics = ServeMetrics(lambda: self.slots.used)  # read when scraped: nothing to keep up to date
        self.models: dict[str, ServedModel] = {}
        for name, path in models.items():
            loaded = load_model(Path(path), device)
            created = int(loaded.path.stat().st_mtime)
            meters = self.metrics.model(name)
            scheduler = None
            if batching and loaded.framing.single_steps:
                scheduler = Scheduler(loaded, limits.max_concurrent, self.slots.give,
                                      observe_step=meters.step_seconds.observe)
            known = None
            if loaded.meta.items is not None:  # read once: whether a drawn item is new is a set lookup
                found = training_items(loaded)
                known = None if found is None else frozenset(found)
            facts = model_facts(name, loaded, known)
            self.models[name] = ServedModel(name, loaded, facts, scheduler, created, meters, known)
            log.info("loaded %s from %s (%s)", name, loaded.path,
                     "batched" if scheduler else "a thread per generation")
        self.default = next(iter(self.models))
        # One model serves every thread: it is in eval mode and each generation has its own state.
        self.pool = ThreadPoolExecutor(limits.max_concurrent, thread_name_prefix="charlstm-generate")
        self._jobs: set[Job] = set()  # running generations, so shutting down can stop them
        self._lock = threading.Lock()

    @property
    def active(self) -> int:
        """Samples generating now (slots taken)."""
        return self.slots.used

    def model(self, name: str | None) -> ServedModel:
        if name is None:
            return self.models[self.default]
        if name not in self.models:
            raise ApiError(404, f"no model named {name!r}; serving: {', '.join(self.models)}", "model")
        return self.models[name]

    def prepare(self, body: GenerateRequestBase) -> tuple[ServedModel, SampleConfig]:
        """The model and sampling settings a request asks for; a missing seed is drawn here, to report."""
        served = self.model(body.model)
        self.check_replacement(served, body.unknown, body.replacement)
        if served.loaded.meta.items is None:
            for field in ("items", "label", "new_only"):
                if getattr(body, field, None) not in (None, False):
                    raise ApiError(422, RUNNING_TEXT, field)
        seed = body.seed if body.seed is not None else draw_seed()
        settings = body.model_dump(exclude={"model", "prompt", "stop", "items", "label", "new_only"})
        try:
            return served, SampleConfig(**{**settings, "seed": seed})
        except ConfigError as exc:
            raise ApiError(422, str(exc)) from None

    @staticmethod
    def check_replacement(served: ServedModel, unknown: str, replacement: str | None) -> None:
        if unknown == "replace" and replacement not in served.loaded.vocab.index:
            raise ApiError(422, f"replacement {replacement!r} is not in the model's vocabulary",
                           "replacement")

    def start(self, served: ServedModel, prompt: str, config: SampleConfig, stops: tuple[str, ...],
              loop: asyncio.AbstractEventLoop) -> Job:
        """Take the slots, then begin generating; the events arrive on the returned job's queue."""
        try:
            prompt_text, ids = prompt_ids(served.loaded, prompt or None, config, config.seed)
        except CharLSTMError as exc:
            raise api_error(exc) from None
        return self.start_ids(served, prompt_text, ids, config, stops, loop)

    def start_ids(self, served: ServedModel, prompt_text: str, ids: np.ndarray, config: SampleConfig,
                  stops: tuple[str, ...], loop: asyncio.AbstractEventLoop, *, items: bool = False) -> Job:
        """``start`` from the prompt's ids (``items``: the samples are items, see jobs.ItemEnds)."""
        rows = rows_of(config)
        if rows > self.slots.total:  # would wait for ever
            raise ApiError(422, f"{rows_asked(config)} is more than the {self.slots.total} "
                                "samples served at once", "num_samples")
        whole = config.beam is not None or config.best_of > 1
        if whole and (items or not served.loaded.framing.carries_state):
            raise ApiError(422, "beam and best_of search running text from a stream model; for a list's "
                                "items use charlstm generate --items --beam",
                           "beam" if config.beam else "best_of")
        if not self.slots.take(rows):
            raise ApiError(503, f"all {self.limits.max_concurrent} generation slots are busy; retry shortly",
                           headers={"Retry-After": str(RETRY_AFTER_S)})
        job = Job(loop, served.name, prompt_text, ids, config, stops, items,
                  count_chars=served.meters.generated.inc)
        with self._lock:
            self._jobs.add(job)
        try:
            if whole:  # known only once searched or scored: no batching, one thread
                self.pool.submit(self.run_on_worker, served, job, self.run_whole)
            elif served.scheduler is not None:
                served.scheduler.submit(job)
            else:
                self.pool.submit(self.run_on_worker, served, job, self.run_alone)
        except BaseException:
            self.slots.give(rows)
            self.forget(job)
            raise
        served.meters.prompt.inc(len(ids))
        return job

    def forget(self, job: Job) -> None:
        """The app is done with ``job`` (its end came, or its client went)."""
        job.stop.set()
        with self._lock:
            self._jobs.discard(job)

    def stop_all(self) -> None:
        """Shutting down: every generation ends now. The schedulers' threads wait idle for more.

        They are not closed: the same app may be served again (tests do), and a daemon thread
        waiting on its condition costs nothing.
        """
        with self._lock:
            for job in self._jobs:
                job.stop.set()

    def run_on_worker(self, served: ServedModel, job: Job,
                      generate: Callable[[ServedModel, Job], None]) -> None:
        """Worker thread: ``generate`` for ``job`` (``run_alone`` or ``run_whole``), its errors as
        events, then its slots back and its end."""
        try:
            job.emit_start()
            generate(served, job)
        except CharLSTMError as exc:
            job.emit("error", api_error(exc))
        except Exception:
            log.exception("generation from %s failed", served.name)
            job.emit("error", ApiError(500, "internal error: the generation failed (see the server log)"))
        finally:
            self.slots.give(rows_of(job.config))
            job.emit("end", None)

    @staticmethod
    def run_whole(served: ServedModel, job: Job) -> None:
        """A beam search or a best-of: known only at the end, so its texts are sent whole."""
        config, out = job.config, TextOut(job)
        if config.beam is not None:
            found = generate_beam(served.loaded, job.prompt, config, job.stops)[1]
            texts, reasons = [b.text for b in found], [b.finish_reason for b in found]
        else:
            texts = generate_best_of(served.loaded, job.prompt, config)[1]
            reasons = ["length"] * len(texts)
        for k, text in enumerate(texts):
            out.add(k, text)
        out.finish(reasons)

    @staticmethod
    def run_alone(served: ServedModel, job: Job) -> None:
        """The per-request path: one generation, its samples as one batch."""
        config, out, ends = job.config, TextOut(job), job.sample_stops()
        device = served.loaded.model.head.weight.device
        generators = sample_generators(config.seed, config.num_samples, device)
        chars = served.loaded.vocab.chars
        steps = continue_ids(served.loaded.model, served.loaded.framing, torch.from_numpy(job.ids),
                             config, generators)
        for step in steps:
            for k, next_id in enumerate(step.tolist()):
                out.add(k, ends.feed(k, chars[next_id]))
            out.maybe_flush(time.perf_counter())
            if job.stop.is_set() or ends.all_ended:
                break
        for k, held in enumerate(ends.end_all("cancelled" if job.stop.is_set() else "length")):
            out.add(k, held)
        out.finish(ends.finish_reasons())


def rows_of(config: SampleConfig) -> int:
    """The slots a generation takes: its rows of state (a beam's width; every best-of draw)."""
    return config.beam if config.beam is not None else config.num_samples * config.best_of


def rows_asked(config: SampleConfig) -> str:
    if config.beam is not None:
        return f"a beam of {config.beam}"
    if config.best_of > 1:
        return f"num_samples {config.num_samples} x best_of {config.best_of}"
    return f"num_samples {config.num_samples}"
