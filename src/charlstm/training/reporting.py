"""The evaluation schedule: when a run scores its held-out text, and what it records then.

An evaluation is due every ``eval_every`` steps and at every epoch's end. It checks the
weights are finite, scores the validation split, appends a line to ``metrics.jsonl``, logs it,
and hands the metric to the checkpoint policy.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from charlstm.config.choices import CheckpointMetric
from charlstm.config.train import TrainConfig
from charlstm.errors import TrainingDivergedError
from charlstm.framing import Framing
from charlstm.model.loss import MAX_LOSS, EvalResult
from charlstm.model.network import CharLSTM
from charlstm.runs.metrics import append_metrics
from charlstm.training.checkpointing import Checkpointing
from charlstm.training.distributed import Distributed
from charlstm.training.events import Callbacks, ReportEnd, ReportStart
from charlstm.training.state import RunState

log = logging.getLogger(__name__)


class Reporter:
    """Evaluates a run's model and records the result in the ``RunState`` it is given."""

    def __init__(self, state: RunState, *, config: TrainConfig, model: CharLSTM, framing: Framing,
                 val_ids: np.ndarray, optimizer: torch.optim.Optimizer, checkpoints: Checkpointing,
                 run_dir: Path, dist: Distributed, callbacks: Callbacks):
        self.state, self.config, self.model, self.framing = state, config, model, framing
        self.val_ids, self.optimizer, self.checkpoints = val_ids, optimizer, checkpoints
        self.run_dir, self.dist, self.callbacks = run_dir, dist, callbacks
        self.device = state.epoch_sum.device
        self.last_step = -1  # the step of the latest report

    def due(self, step: int, epoch_end: bool) -> bool:
        every = self.config.eval_every
        return epoch_end or bool(every and step % every == 0)

    def evaluate_val(self) -> EvalResult | None:
        if not self.framing.can_score(self.val_ids):
            return None
        cap = self.config.eval_max_chars or None  # 0: all
        return self.framing.evaluate(self.model, self.val_ids, device=self.device, max_chars=cap)

    def report(self, recent_loss: float | None, epoch_end: bool, elapsed: float) -> None:
        """Evaluate, log a metrics line, keep the best checkpoints and write ``last``."""
        p, c = self.state.progress, self.config
        self.callbacks.emit(ReportStart(p.step))
        record: dict[str, Any] = {"step": p.step, "epoch": p.epoch + 1, "elapsed_s": round(elapsed, 2),
                                  "lr": self.optimizer.param_groups[0]["lr"]}
        if recent_loss is not None:
            record["train_loss"] = recent_loss
        if epoch_end and p.epoch_samples:
            record["epoch_train_loss"] = float(self.dist.mean(self.state.epoch_sum)) / p.epoch_samples
        self.check_finite(recent_loss)
        self.checkpoints.gather()
        self.last_step = p.step
        if not self.dist.is_main:  # rank 0 alone evaluates, logs and writes; the weights are the same
            self.callbacks.emit(ReportEnd(p.step, {}))
            return
        result = self.evaluate_val()
        if result is not None:
            # val_characters says what the figures were computed on
            record.update({f"val_{k}": v for k, v in result.as_dict().items()})
        metric_key = "val_loss" if c.checkpoint_metric == CheckpointMetric.VAL_LOSS else "epoch_train_loss"
        self.state.last_eval = record
        append_metrics(self.run_dir, record)
        log.info("step %d epoch %d: %s", p.step, p.epoch + 1,
                 ", ".join(f"{k} {v:.4f}" for k, v in record.items() if "loss" in k or "bits" in k))
        self.checkpoints.keep_if_best(record.get(metric_key))
        self.checkpoints.save_last()
        self.callbacks.emit(ReportEnd(p.step, record, result))

    def check_finite(self, recent_loss: float | None) -> None:
        """Refuse to go on (or save) once a loss is NaN or past ``MAX_LOSS``, or a weight is not finite."""
        sums = torch.stack([p.detach().float().sum() for p in self.model.parameters()])
        if not bool(sums.isfinite().all()) or (recent_loss is not None and not recent_loss < MAX_LOSS):
            raise TrainingDivergedError(
                f"training diverged at step {self.state.progress.step} (loss {recent_loss}); the last good "
                f"checkpoint is kept in {self.run_dir}; try a lower lr or grad_clip",
                hint="--lr, --grad-clip")
