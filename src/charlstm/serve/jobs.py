"""One generation as the service sees it, and the slots that bound how many run at once.

A generation runs off the event loop (on the scheduler's thread, or a worker thread for the
per-request path) and hands its events to the loop through ``Job.emit``:

    start  {model, prompt, seed, length, num_samples}
    text   {delta: [new text of each sample]}
    done   {characters, elapsed_s, first_char_s, stopped, finish_reasons}
    error  ApiError
    end    None (always last)

``Job.stop`` is set by whoever no longer wants the text (the client went, the server stops);
the generator checks it between steps. Nothing here knows HTTP beyond ``ApiError``.

A job of a records model's items (``Job.items``) is a group of items that share a start (their
label's symbol and the prefix): a sample ends at the item's end symbol, exactly as at a stop
sequence (its reason "end"), and no item symbol is ever shown (``ItemEnds``).
"""

# No ``from __future__ import annotations``: see schemas.py.

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from charlstm.config.sample import SampleConfig
from charlstm.data.records import END, RESERVED
from charlstm.generation.stops import SampleStops

FLUSH_INTERVAL_S = 0.04  # at most 25 text events a second per generation: smooth to watch, cheap to serve


class ApiError(Exception):
    """A request the service refuses: HTTP status, a message, the field at fault."""

    def __init__(self, status: int, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(message)
        self.status, self.field, self.headers, self.extra = status, field, headers, extra

    def body(self) -> dict[str, Any]:
        return {"error": str(self), "field": self.field, **self.extra}


@dataclass(eq=False)
class Job:
    """One request's generation: what to generate, and the queue its events go to on the event loop."""

    loop: asyncio.AbstractEventLoop
    model: str
    prompt: str  # as the model reads it
    ids: np.ndarray  # (P,) the prompt's ids
    config: SampleConfig  # its seed is set
    stops: tuple[str, ...] = ()
    items: bool = False  # each sample is an item of a records model: see ItemEnds
    stop: threading.Event = field(default_factory=threading.Event)
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # set by each put: something to read
    started: float = field(default_factory=time.perf_counter)
    # Set by a scheduler: events wait there and go to the loop together, once a step (see Outbox).
    outbox: "Outbox | None" = None
    # Told the characters of each text event as it is sent (the metrics' counter: metrics.py).
    count_chars: Callable[[int], None] | None = None

    def emit(self, kind: str, payload: Any) -> None:
        if self.outbox is not None:
            self.outbox.add(self, (kind, payload))
            return
        try:
            self.loop.call_soon_threadsafe(self.put, (kind, payload))
        except RuntimeError:  # the event loop is closed: the server is gone, and so is the client
            self.stop.set()

    def put(self, item: tuple[str, Any]) -> None:
        """On the event loop: queue an event, and wake whoever waits for one."""
        self.queue.put_nowait(item)
        self.ready.set()

    def sample_stops(self) -> SampleStops:
        """Its samples' watch for their stop sequences (and, for items, their ends)."""
        if self.items:
            return ItemEnds(self.stops, self.config.num_samples)
        return SampleStops(self.stops, self.config.num_samples)

    def emit_start(self) -> None:
        c = self.config
        self.emit("start", {"model": self.model, "prompt": self.prompt, "seed": c.seed, "length": c.length,
                            "num_samples": c.num_samples})


class ItemEnds(SampleStops):
    """Items' ends: a sample ends at the end symbol (reason "end"), which is never shown.

    The start and label symbols are never a training target, so a sample draws one only by the
    chance a high temperature gives it; it is not shown either (the model still reads it).
    """

    def feed(self, sample: int, ch: str) -> str:
        if self.reasons[sample] is None and RESERVED.fullmatch(ch):
            if ch != END:
                return ""
            self.reasons[sample] = "end"
            return self.matchers[sample].flush()  # a stop sequence begun, but not finished, is text
        return super().feed(sample, ch)

    def stopped(self, sample: int) -> bool:
        return self.reasons[sample] in ("stop", "end")


class Outbox:
    """Events of many jobs, handed to their event loops in one call per loop.

    Waking the loop costs a system call and a pass of its scheduler; a step of 64 streams that
    woke it once per stream would keep it (and the GIL) busier than the model.
    """

    def __init__(self) -> None:
        self.waiting: dict[asyncio.AbstractEventLoop, list[tuple[Job, tuple[str, Any]]]] = {}

    def add(self, job: Job, item: tuple[str, Any]) -> None:
        self.waiting.setdefault(job.loop, []).append((job, item))

    def send(self) -> None:
        waiting, self.waiting = self.waiting, {}
        for loop, items in waiting.items():
            try:
                loop.call_soon_threadsafe(_put_all, items)
            except RuntimeError:  # that loop is closed: its server, and its clients, are gone
                for job, _ in items:
                    job.stop.set()


def _put_all(items: list[tuple[Job, tuple[str, Any]]]) -> None:
    for job, item in items:
        job.put(item)


class TextOut:
    """A generation's text on its way out: per-sample buffers flushed as ``text`` events by time."""

    def __init__(self, job: Job):
        self.job = job
        self.pending = [""] * job.config.num_samples
        self.last_flush = job.started
        self.first_char_s: float | None = None
        self.characters = 0
        self.counted = 0  # of them, told to job.count_chars: once a flush, not once a character

    def add(self, sample: int, text: str) -> None:
        self.pending[sample] += text
        self.characters += len(text)

    def maybe_flush(self, now: float) -> None:
        """Send what is pending: the first text at once, then at most every FLUSH_INTERVAL_S."""
        if not any(self.pending):
            return
        if self.first_char_s is None:
            self.first_char_s = now - self.job.started
        elif now - self.last_flush < FLUSH_INTERVAL_S:
            return
        self.flush(now)

    def flush(self, now: float) -> None:
        if any(self.pending):
            if self.first_char_s is None:
                self.first_char_s = now - self.job.started
            if self.job.count_chars is not None:  # before the event: a client that has it finds it counted
                self.job.count_chars(self.characters - self.counted)
                self.counted = self.characters
            self.job.emit("text", {"delta": self.pending})
            self.pending = [""] * len(self.pending)
            self.last_flush = now

    def finish(self, finish_reasons: list[str]) -> None:
        """The last text, then ``done``."""
        now = time.perf_counter()
        self.flush(now)
        self.job.emit("done", {"characters": self.characters, "elapsed_s": round(now - self.job.started, 6),
                               "first_char_s": round(self.first_char_s or 0.0, 6),
                               "stopped": self.job.stop.is_set(), "finish_reasons": finish_reasons})


class Slots:
    """How many samples may generate at once, across the service; taken per request, given back per sample."""

    def __init__(self, total: int):
        self.total, self.used = total, 0
        self._lock = threading.Lock()

    def take(self, count: int) -> bool:
        with self._lock:
            if self.used + count > self.total:
                return False
            self.used += count
            return True

    def give(self, count: int = 1) -> None:
        with self._lock:
            self.used -= count
