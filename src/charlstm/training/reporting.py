"""The evaluation schedule: when a run scores its held-out text, and what it records then.

An evaluation is due every ``eval_every`` steps and at every epoch's end. It checks the
weights are finite, scores the validation split, appends a line to ``metrics.jsonl``, logs it,
and hands the metric to the checkpoint policy.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch

from charlstm.errors import TrainingDivergedError
from charlstm.model.loss import MAX_LOSS, EvalResult
from charlstm.runs.metrics import append_metrics
from charlstm.training.events import ReportEnd, ReportStart

if TYPE_CHECKING:
    from charlstm.training.trainer import Trainer

log = logging.getLogger(__name__)


class Reporter:
    """Evaluates one trainer's model and records the result."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.last_step = -1  # the step of the latest report

    def due(self, step: int, epoch_end: bool) -> bool:
        every = self.trainer.config.eval_every
        return epoch_end or bool(every and step % every == 0)

    def evaluate_val(self) -> EvalResult | None:
        t = self.trainer
        if len(t.val_ids) <= t.config.seq_len:
            return None
        cap = t.config.eval_max_chars or None  # 0: all
        return t.framing.evaluate(t.model, t.val_ids, device=t.device, max_chars=cap)

    def report(self, recent_loss: float | None, epoch_end: bool, elapsed: float) -> None:
        """Evaluate, log a metrics line, keep the best checkpoints and write ``last``."""
        t = self.trainer
        p, c = t.progress, t.config
        t.callbacks.emit(ReportStart(p.step))
        record: dict[str, Any] = {"step": p.step, "epoch": p.epoch + 1, "elapsed_s": round(elapsed, 2),
                                  "lr": t.optimizer.param_groups[0]["lr"]}
        if recent_loss is not None:
            record["train_loss"] = recent_loss
        if epoch_end and p.epoch_samples:
            record["epoch_train_loss"] = float(t.dist.mean(t.epoch_sum)) / p.epoch_samples
        self.check_finite(recent_loss)
        t.checkpoints.gather()
        self.last_step = p.step
        if not t.dist.is_main:  # rank 0 alone evaluates, logs and writes; the weights are the same
            t.callbacks.emit(ReportEnd(p.step, {}))
            return
        result = self.evaluate_val()
        if result is not None:
            # val_characters says what the figures were computed on
            record.update({f"val_{k}": v for k, v in result.as_dict().items()})
        metric_key = "val_loss" if c.checkpoint_metric == "val_loss" else "epoch_train_loss"
        t.last_eval = record
        append_metrics(t.run_dir, record)
        log.info("step %d epoch %d: %s", p.step, p.epoch + 1,
                 ", ".join(f"{k} {v:.4f}" for k, v in record.items() if "loss" in k or "bits" in k))
        t.checkpoints.keep_if_best(record.get(metric_key))
        t.checkpoints.save_last()
        t.callbacks.emit(ReportEnd(p.step, record, result))

    def check_finite(self, recent_loss: float | None) -> None:
        """Refuse to go on (or save) once a loss is NaN or past ``MAX_LOSS``, or a weight is not finite."""
        t = self.trainer
        sums = torch.stack([p.detach().float().sum() for p in t.model.parameters()])
        if not bool(sums.isfinite().all()) or (recent_loss is not None and not recent_loss < MAX_LOSS):
            raise TrainingDivergedError(
                f"training diverged at step {t.progress.step} (loss {recent_loss}); the last good "
                f"checkpoint is kept in {t.run_dir}; try a lower lr or grad_clip",
                hint="--lr, --grad-clip")
