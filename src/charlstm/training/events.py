"""What a training run tells its observers: the events, and the callbacks that hear them.

The trainer emits; the progress bar, the sample log, benchmarks and tests subscribe with
``trainer.callbacks.on(EventType, function)`` instead of patching the trainer's methods.
Subscribers run on the training thread, between steps: keep them short, and read tensors
(``StepEnd.loss``) only when needed, as reading one waits for the GPU.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch

from charlstm.model.loss import EvalResult


@dataclass(frozen=True)
class RunStart:
    step: int  # where this invocation starts (0, or where a resumed run stopped)
    total_steps: int | None  # the step the step and epoch limits end at, when they are set
    time_budget_s: float | None = None  # this invocation's time budget, when it has one


@dataclass(frozen=True)
class StepEnd:
    step: int  # steps done, this one included
    epoch: int  # the epoch in progress, from 0
    loss: torch.Tensor  # this step's training loss, on the device
    inputs: torch.Tensor  # the batch this process read, (B, T) ids
    targets: torch.Tensor  # its targets: (B, T) for stream framing, (B,) for window


@dataclass(frozen=True)
class LogPoint:
    """Every ``log_every`` steps (and at evaluations): the recent mean loss and speed."""

    step: int
    epoch: int
    loss: float  # mean training loss since the previous log point
    step_s: float  # seconds per step since then
    chars_per_s: float
    time_left_s: float | None  # of the time budget, when there is one
    lr: float  # the learning rate of the step just done


@dataclass(frozen=True)
class ReportStart:
    step: int


@dataclass(frozen=True)
class ReportEnd:
    step: int
    record: dict[str, Any]  # what was appended to metrics.jsonl (empty on ranks other than 0)
    val: EvalResult | None = None  # the held-out score, when there is a held-out split (rank 0 only)


@dataclass(frozen=True)
class SampleLogged:
    """A sample ``sample_every`` produced: the prompt and what the model wrote after it."""

    step: int
    temperature: float
    text: str  # prompt and continuation, as logged


@dataclass(frozen=True)
class CheckpointSaved:
    path: Path
    best: bool  # a new best by the run's metric, or the ``last`` checkpoint


@dataclass(frozen=True)
class RunEnd:
    step: int
    reason: str  # max_steps, epochs, time_budget or interrupted


Event = RunStart | StepEnd | LogPoint | ReportStart | ReportEnd | SampleLogged | CheckpointSaved | RunEnd
E = TypeVar("E", RunStart, StepEnd, LogPoint, ReportStart, ReportEnd, SampleLogged, CheckpointSaved, RunEnd)


class Observer(Protocol):
    """What watches a run: it subscribes to the events it wants."""

    def subscribe(self, callbacks: Callbacks) -> None: ...


class Callbacks:
    """Subscribers by event type, called in the order they subscribed."""

    def __init__(self) -> None:
        self._subscribers: dict[type, list[Callable[[Any], None]]] = defaultdict(list)

    def on(self, event_type: type[E], callback: Callable[[E], None]) -> None:
        self._subscribers[event_type].append(callback)

    def emit(self, event: Event) -> None:
        for callback in self._subscribers.get(type(event), ()):
            callback(event)
