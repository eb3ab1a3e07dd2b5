"""How a run shows its progress: a bar on a terminal, plain lines anywhere else.

Written to a file or a pipe (nohup, CI, ``> train.log 2>&1``) a bar's every ``\\r`` frame would
stay in the output, so there the run logs one plain line every ``LINE_EVERY_S`` seconds of
training instead, besides the line each evaluation logs. Under a time budget the bar counts
seconds, not steps: a step total estimated from the speed so far would jump as the speed moves.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

from tqdm import tqdm

from charlstm.training.events import Callbacks, LogPoint, RunEnd, RunStart

log = logging.getLogger(__name__)

LINE_EVERY_S = 30.0  # seconds between two plain progress lines


def progress_display(stream: TextIO | None = None) -> ProgressBar | ProgressLines:
    """A bar when ``stream`` (stderr) is a terminal, plain lines otherwise."""
    stream = stream or sys.stderr
    return ProgressBar() if stream.isatty() else ProgressLines()


class ProgressBar:
    """Steps, or seconds under a time budget, with loss and characters/s (rank 0 only)."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None
        self.by_clock = False
        self.start = 0.0

    def subscribe(self, callbacks: Callbacks) -> None:
        callbacks.on(RunStart, self._start)
        callbacks.on(LogPoint, self._update)
        callbacks.on(RunEnd, self._close)

    def _start(self, event: RunStart) -> None:
        self.by_clock, self.start = event.time_budget_s is not None, time.perf_counter()
        if self.by_clock:
            self.bar = tqdm(total=round(event.time_budget_s or 0), unit="s", dynamic_ncols=True, leave=False,
                            bar_format="{l_bar}{bar}| {elapsed}<{remaining}{postfix}")
        else:
            self.bar = tqdm(total=event.total_steps, initial=event.step, unit="step", dynamic_ncols=True,
                            leave=False)

    def _update(self, event: LogPoint) -> None:
        if self.bar is None:
            return
        self.bar.set_postfix(step=event.step, epoch=event.epoch + 1, loss=f"{event.loss:.3f}",
                             chars_s=f"{event.chars_per_s:,.0f}", refresh=False)
        done = round(time.perf_counter() - self.start) if self.by_clock else event.step
        self.bar.update(min(done, self.bar.total or done) - self.bar.n)

    def _close(self, event: RunEnd) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class ProgressLines:
    """One plain log line every ``LINE_EVERY_S`` seconds, for output that is not a terminal."""

    def __init__(self, every_s: float = LINE_EVERY_S, clock=time.perf_counter):
        self.every_s, self.clock = every_s, clock
        self.next_at = 0.0
        self.total_steps: int | None = None

    def subscribe(self, callbacks: Callbacks) -> None:
        callbacks.on(RunStart, self._start)
        callbacks.on(LogPoint, self._update)

    def _start(self, event: RunStart) -> None:
        self.total_steps, self.next_at = event.total_steps, self.clock() + self.every_s

    def _update(self, event: LogPoint) -> None:
        if self.clock() < self.next_at:
            return
        self.next_at = self.clock() + self.every_s
        of = f"/{self.total_steps}" if self.total_steps else ""
        left = "" if event.time_left_s is None else f", {_duration(event.time_left_s)} left"
        log.info("step %d%s, epoch %d: loss %.4f, %s chars/s%s", event.step, of, event.epoch + 1, event.loss,
                 f"{event.chars_per_s:,.0f}", left)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
