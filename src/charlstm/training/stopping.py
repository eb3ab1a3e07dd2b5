"""When a run stops, and how much of it is spent (for the learning-rate schedule)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from charlstm.config.train import TrainConfig
from charlstm.runs.meta import Progress
from charlstm.training.distributed import Distributed


class StopRules:
    """The limits of one invocation: steps, epochs, the time budget and Ctrl-C."""

    def __init__(self, config: TrainConfig, dist: Distributed, batches_per_epoch: int,
                 clock: Callable[[], float]):
        self.config, self.dist, self.batches_per_epoch = config, dist, batches_per_epoch
        self.clock = clock  # the trainer's, which a benchmark may pause while it scores
        self.start = clock()

    @property
    def elapsed(self) -> float:
        return self.clock() - self.start

    def total_steps(self) -> int | None:
        c = self.config
        totals = [t for t in (c.max_steps, c.epochs and c.epochs * self.batches_per_epoch) if t]
        return min(totals) if totals else None

    def time_left(self) -> float | None:
        budget = self.config.time_budget
        return None if budget is None else max(0.0, budget - self.elapsed)

    def spent(self, progress: Progress) -> float:
        """How much of the tightest limit is spent, 0 to 1 (or more)."""
        c, p = self.config, progress
        parts = [0.0]
        if c.max_steps:
            parts.append(p.step / c.max_steps)
        if c.epochs:
            parts.append((p.epoch + p.batch / self.batches_per_epoch) / c.epochs)
        if c.time_budget:
            parts.append(self.elapsed / c.time_budget)
        return max(parts)

    def reason(self, progress: Progress, interrupt: threading.Event, agree: bool = True) -> str | None:
        """Why to stop now, if at all.

        Step and epoch limits fall on the same step in every process. The clock and Ctrl-C
        do not, so with several processes they are only read when ``agree`` is set (at log
        points), where the processes compare notes and stop together.
        """
        c, p = self.config, progress
        if c.max_steps is not None and p.step >= c.max_steps:
            return "max_steps"
        if c.epochs is not None and p.epoch >= c.epochs:
            return "epochs"
        if self.dist.enabled and not agree:
            return None
        reason = None
        if interrupt.is_set():
            reason = "interrupted"
        elif c.time_budget is not None and self.elapsed >= c.time_budget:
            reason = "time_budget"
        if self.dist.enabled:
            reasons = [r for r in self.dist.gather_objects(reason) if r]
            reason = reasons[0] if reasons else None
        return reason
