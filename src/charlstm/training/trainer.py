"""The training loop, and the one object that holds a run's model, optimizer, data and counters.

The loop alone lives here. What it hands off: ``checkpointing`` (what is saved, what is kept,
resume), ``reporting`` (the evaluation schedule and metrics.jsonl), ``stopping`` (limits and
the budget the schedule follows), ``display``, ``samples`` and ``tensorboard`` (subscribers to
the events of ``events``). Seeding is the session's job (``session.start_run``), done before a
Trainer is built, so building one changes no global state.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from charlstm.config import CorpusConfig, ModelConfig, TrainConfig
from charlstm.data.prepared import PreparedData
from charlstm.errors import ConfigError
from charlstm.framing import framing_for
from charlstm.model.network import CharLSTM, State, describe_shapes
from charlstm.model.runtime import check_bf16, physical_memory, resolve_device
from charlstm.runs.lock import RunLock
from charlstm.runs.meta import Progress
from charlstm.training.checkpointing import Checkpointing
from charlstm.training.display import ProgressBar
from charlstm.training.distributed import Distributed
from charlstm.training.events import Callbacks, LogPoint, RunEnd, RunStart, StepEnd
from charlstm.training.reporting import Reporter
from charlstm.training.runtime import LOG_FILE, run_log, stop_on_sigint
from charlstm.training.samples import SampleLogger
from charlstm.training.schedule import lr_factor, make_optimizer
from charlstm.training.stopping import StopRules
from charlstm.training.tensorboard import TensorBoardLogger

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    progress: Progress
    stop_reason: str
    last_eval: dict[str, Any] = field(default_factory=dict)
    is_main: bool = True  # rank 0 of a distributed run, or a lone process: the one that reports


class Trainer:
    """Owns one run's model, optimizer, data and counters; ``fit`` trains it."""

    def __init__(
        self, run_dir: Path, data: PreparedData, model_config: ModelConfig,
        train_config: TrainConfig, corpus_config: CorpusConfig, *, progress_bar: bool = True,
        dist: Distributed | None = None, initial_weights: dict[str, torch.Tensor] | None = None,
        lock: RunLock | None = None,
    ):
        self.run_dir, self.data, self.config = run_dir, data, train_config
        self.model_config, self.corpus_config = model_config, corpus_config
        self.dist = dist = dist or Distributed()
        self.lock = lock  # the run folder's, held from the start of a session until ``fit`` returns
        self.device = resolve_device(train_config.device)
        if dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", dist.local_rank)
        if train_config.precision == "bf16":
            check_bf16(self.device)
        self.stop_requested = threading.Event()  # Ctrl-C, or another thread, asks to stop
        self.clock = time.perf_counter  # replaceable, e.g. by a benchmark that pauses it to score
        self.callbacks = Callbacks()
        self.model = build_for_training(model_config)
        if initial_weights is not None:  # fine-tuning: another run's weights, before DDP copies rank 0's
            self.model.load_state_dict(initial_weights)
        self.model.to(self.device)
        # ``model`` is what is saved and evaluated; ``train_model`` is what steps (DDP averages
        # its gradients across processes, and starts every process from rank 0's weights).
        self.train_model: torch.nn.Module = self.model
        if dist.enabled:
            self.train_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.optimizer = make_optimizer(self.model, train_config)
        # torch.compile wraps what steps; the plain module is still what is saved.
        self.step_model = torch.compile(self.train_model) if train_config.compile else self.train_model
        self.progress = Progress()
        self.hidden: State | None = None  # the state carried into the next batch (stream framing)
        # Summed on the device: reading a loss every step would sync the GPU.
        self.epoch_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.last_eval: dict[str, Any] = {}
        self.framing = framing_for(train_config)
        c = train_config
        self.batches = self.framing.batches(data.split("train"), c.batch_size, seed=c.seed, shuffle=c.shuffle,
                                            rank=dist.rank, world_size=dist.world_size)
        self.val_ids = data.split("val")
        if c.checkpoint_metric == "val_loss" and len(self.val_ids) <= c.seq_len:
            raise ConfigError("checkpoint_metric val_loss needs a held-out split: raise val_fraction")
        self.checkpoints = Checkpointing(self)
        self.reporter = Reporter(self)
        SampleLogger(self)
        if train_config.tensorboard:
            TensorBoardLogger(self)
        if progress_bar and dist.is_main:
            ProgressBar(self.callbacks)

    def close(self) -> None:
        """Let the run folder's lock go without training (``fit`` does so when it returns)."""
        if self.lock is not None:
            self.lock.release()

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimizer step on a batch; the loss, detached, on the device."""
        if self.device.type == "cuda":
            # Page-locked host memory lets the copy run alongside the previous step's kernels.
            x, y = x.pin_memory(), y.pin_memory()
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        with self.autocast():
            loss, self.hidden = self.framing.loss(self.step_model, x, y, self.hidden)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        return loss.detach()

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast when asked: matmuls in bfloat16, weights, loss and optimizer in fp32."""
        if self.config.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def fit(self) -> TrainResult:
        """Train until a limit or Ctrl-C; always leaves ``last`` up to date; logs to RUN/train.log.

        Holds the run folder's lock meanwhile (taken again for a second ``fit``), and lets it go.
        """
        if not self.dist.is_main:
            return self._fit()
        if self.lock is not None:
            self.lock.acquire()
        try:
            with run_log(self.run_dir / LOG_FILE):
                return self._fit()
        finally:
            self.close()

    def _fit(self) -> TrainResult:
        p = self.progress
        stops = StopRules(self.config, self.dist, len(self.batches), self.clock)
        window = _LossWindow(self.device, self.clock)
        self.callbacks.emit(RunStart(p.step, stops.total_steps()))
        with stop_on_sigint(self.stop_requested) as interrupt:
            self._finish_epoch_if_read()
            reason = stops.reason(p, interrupt)
            while reason is None:
                if p.batch == 0:
                    self.hidden = None  # each epoch reads the text from its start
                for k, x, y in self.batches.iterate(p.epoch, p.batch):
                    self._set_lr(stops.spent(p))
                    loss = self.train_step(x, y)
                    window.add(loss)
                    self.epoch_sum += loss.double() * len(y)
                    p.epoch_samples += len(y)
                    p.step, p.batch = p.step + 1, k + 1
                    self.callbacks.emit(StepEnd(p.step, p.epoch, loss, x, y))
                    reason = self._after_step(window, stops, interrupt)
                    if reason:
                        break
                else:  # a turn that trained nothing must still see the clock and Ctrl-C
                    self._finish_epoch_if_read()
                    reason = stops.reason(p, interrupt)
        if self.reporter.last_step != p.step:
            self.reporter.report(window.mean(self.dist), False, stops.elapsed)
        else:  # counters moved on at the epoch's end
            self.checkpoints.gather()
            self.checkpoints.save_last()
        self.callbacks.emit(RunEnd(p.step, reason))
        log.info("stopped after step %d (%s)", p.step, reason)
        return TrainResult(self.run_dir, p, reason or "", self.last_eval, self.dist.is_main)

    def _set_lr(self, spent: float) -> None:
        factor = lr_factor(self.config, self.progress.step, spent)
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr * factor

    def _after_step(self, window: _LossWindow, stops: StopRules, interrupt: threading.Event) -> str | None:
        """Log points, evaluations and the end of an epoch; why to stop, if it is time."""
        p, c = self.progress, self.config
        epoch_end = p.batch == len(self.batches)
        eval_due = self.reporter.due(p.step, epoch_end)
        log_point = window.steps >= c.log_every or eval_due
        recent = None
        if log_point:
            recent, step_s = window.take(self.dist)
            if not math.isfinite(recent):
                self.reporter.check_finite(recent)
            self.callbacks.emit(LogPoint(p.step, p.epoch, recent, step_s, c.batch_size * c.seq_len / step_s,
                                         stops.time_left(), self.optimizer.param_groups[0]["lr"]))
        if eval_due:
            self.reporter.report(recent, epoch_end, stops.elapsed)
        self._finish_epoch_if_read()
        return stops.reason(p, interrupt, agree=log_point)

    def _finish_epoch_if_read(self) -> None:
        """Move the counters to the next epoch once every batch of this one is read.

        A checkpoint written by an epoch's last evaluation still holds that epoch with all its
        batches read (its end-of-epoch figures belong to it); resuming from one starts here.
        """
        p = self.progress
        if p.batch >= len(self.batches):
            p.epoch, p.batch, p.epoch_samples = p.epoch + 1, 0, 0
            self.epoch_sum.zero_()


class _LossWindow:
    """The training loss summed on the device between log points (reading it every step syncs)."""

    def __init__(self, device: torch.device, clock):
        self.clock = clock
        self.sum = torch.zeros((), dtype=torch.float64, device=device)
        self.steps, self.start = 0, clock()

    def add(self, loss: torch.Tensor) -> None:
        self.sum += loss
        self.steps += 1

    def mean(self, dist: Distributed) -> float | None:
        return float(dist.mean(self.sum)) / self.steps if self.steps else None

    def take(self, dist: Distributed) -> tuple[float, float]:
        """The mean loss and seconds per step since the last take, and start a new window."""
        mean = float(dist.mean(self.sum)) / self.steps
        step_s = max((self.clock() - self.start) / self.steps, 1e-9)
        self.sum.zero_()
        self.steps, self.start = 0, self.clock()
        return mean, step_s


# Bytes a trained parameter needs: fp32 weight, gradient and Adam's two moments.
TRAINING_BYTES_PER_PARAMETER = 16


def build_for_training(config: ModelConfig) -> CharLSTM:
    """A new model, or one clear line when it cannot fit in memory (checked before allocating:
    a model near the machine's memory would page for minutes before failing)."""
    count, _ = describe_shapes(config)
    needed = count * TRAINING_BYTES_PER_PARAMETER
    memory = physical_memory()
    if memory is not None and needed > memory:
        raise ConfigError(f"a model of {count:,} parameters needs about {needed / 1e9:,.1f} GB to train "
                          f"(weights, gradients, optimizer); this machine has {memory / 1e9:,.1f} GB: "
                          "choose a smaller hidden_size or num_layers", hint="--hidden-size, --num-layers")
    try:
        return CharLSTM(config)
    except (RuntimeError, MemoryError) as exc:
        if not isinstance(exc, MemoryError) and "allocate" not in str(exc):
            raise
        raise ConfigError(f"a model of {count:,} parameters ({count * 4 / 1e9:,.1f} GB of weights) does not "
                          "fit in memory; choose a smaller hidden_size or num_layers",
                          hint="--hidden-size, --num-layers") from None
