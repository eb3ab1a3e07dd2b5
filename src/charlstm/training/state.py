"""The state a run carries from step to step, and the one its collaborators read and write.

The trainer owns one ``RunState``; the checkpoint policy saves it and restores it, the
evaluation schedule records into it, and nothing else of the trainer reaches them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

from charlstm.model.network import State
from charlstm.runs.meta import Progress


@dataclass
class RunState:
    """Counters, the LSTM state carried into the next batch, and the latest evaluation."""

    progress: Progress
    # The epoch's training loss summed on the device: reading a loss every step would sync the GPU.
    epoch_sum: torch.Tensor
    hidden: State | None = None  # carried into the next batch (stream framing); None: zeros
    last_eval: dict[str, Any] = field(default_factory=dict)  # the latest metrics.jsonl record

    @classmethod
    def fresh(cls, device: torch.device) -> RunState:
        return cls(Progress(), torch.zeros((), dtype=torch.float64, device=device))

    def saved_progress(self) -> Progress:
        """The counters as a checkpoint records them, with the epoch's loss sum read off the device."""
        return replace(self.progress, epoch_loss_sum=float(self.epoch_sum))

    def finish_epoch_if_read(self, batches_per_epoch: int) -> None:
        """Move the counters to the next epoch once every batch of this one is read.

        A checkpoint written by an epoch's last evaluation still holds that epoch with all its
        batches read (its end-of-epoch figures belong to it); resuming from one starts here.
        """
        p = self.progress
        if p.batch >= batches_per_epoch:
            p.epoch, p.batch, p.epoch_samples = p.epoch + 1, 0, 0
            self.epoch_sum.zero_()
