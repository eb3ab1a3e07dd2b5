"""The progress bar: a subscriber to the trainer's events, shown on rank 0 only."""

from __future__ import annotations

from tqdm import tqdm

from charlstm.training.events import Callbacks, LogPoint, RunEnd, RunStart


class ProgressBar:
    """Steps with rate, loss and characters/s; its ETA follows the time budget when that ends first."""

    def __init__(self, callbacks: Callbacks):
        self.bar: tqdm | None = None
        self.limit: int | None = None
        callbacks.on(RunStart, self._start)
        callbacks.on(LogPoint, self._update)
        callbacks.on(RunEnd, self._close)

    def _start(self, event: RunStart) -> None:
        self.limit = event.total_steps
        self.bar = tqdm(total=event.total_steps, initial=event.step, unit="step", dynamic_ncols=True,
                        leave=False)

    def _update(self, event: LogPoint) -> None:
        if self.bar is None:
            return
        if event.time_left_s is not None:  # the clock may end the run first: an ETA that says so
            by_clock = event.step + round(event.time_left_s / event.step_s)
            self.bar.total = by_clock if self.limit is None else min(self.limit, by_clock)
        self.bar.set_postfix(epoch=event.epoch + 1, loss=f"{event.loss:.3f}",
                             chars_s=f"{event.chars_per_s:,.0f}")
        self.bar.update(event.step - self.bar.n)

    def _close(self, event: RunEnd) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
