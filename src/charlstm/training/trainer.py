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
from charlstm.config.choices import CheckpointMetric, Precision
from charlstm.data.prepared import PreparedData
from charlstm.errors import ConfigError
from charlstm.framing import framing_for
from charlstm.model.network import CharLSTM, describe_shapes
from charlstm.model.runtime import check_bf16, physical_memory, resolve_device
from charlstm.runs.lock import RunLock
from charlstm.runs.meta import Progress
from charlstm.training.checkpointing import Checkpointing
from charlstm.training.display import progress_display
from charlstm.training.distributed import Distributed
from charlstm.training.events import Callbacks, LogPoint, Observer, RunEnd, RunStart, StepEnd
from charlstm.training.process import LOG_FILE, run_log, stop_on_sigint
from charlstm.training.reporting import Reporter
from charlstm.training.samples import SampleLogger
from charlstm.training.schedule import lr_factor, make_optimizer
from charlstm.training.state import RunState
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
    """Owns one run's model, optimizer, data and state; ``fit`` trains it."""

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
        if train_config.precision == Precision.BF16:
            check_bf16(self.device)
        self.stop_requested = threading.Event()  # Ctrl-C, or another thread, asks to stop
        self.clock = time.perf_counter  # replaceable, e.g. by a benchmark that pauses it to score
        self.callbacks = Callbacks()
        self._build_model(initial_weights)
        self.state = RunState.fresh(self.device)
        self.framing = framing_for(train_config)
        c = train_config
        self.batches = self.framing.batches(data.split("train"), c.batch_size, seed=c.seed, shuffle=c.shuffle,
                                            rank=dist.rank, world_size=dist.world_size)
        self.val_ids = data.split("val")
        if c.checkpoint_metric == CheckpointMetric.VAL_LOSS and not self.framing.can_score(self.val_ids):
            raise ConfigError("checkpoint_metric val_loss needs a held-out split: raise val_fraction")
        self.checkpoints = Checkpointing(
            self.state, run_dir=run_dir, model=self.model, optimizer=self.optimizer,
            configs=(model_config, train_config, corpus_config), data=data, dist=dist,
            callbacks=self.callbacks)
        self.reporter = Reporter(
            self.state, config=c, model=self.model, framing=self.framing, val_ids=self.val_ids,
            optimizer=self.optimizer, checkpoints=self.checkpoints, run_dir=run_dir, dist=dist,
            callbacks=self.callbacks)
        for observer in self._observers(progress_bar):
            observer.subscribe(self.callbacks)

    def _build_model(self, initial_weights: dict[str, torch.Tensor] | None) -> None:
        """The model on its device, what steps it (DDP, compiled) and its optimizer."""
        self.model = build_for_training(self.model_config)
        if initial_weights is not None:  # fine-tuning: another run's weights, before DDP copies rank 0's
            self.model.load_state_dict(initial_weights)
        self.model.to(self.device)
        # ``model`` is what is saved and evaluated; ``train_model`` is what steps (DDP averages
        # its gradients across processes, and starts every process from rank 0's weights).
        self.train_model: torch.nn.Module = self.model
        if self.dist.enabled:
            self.train_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.optimizer = make_optimizer(self.model, self.config)
        # torch.compile wraps what steps; the plain module is still what is saved.
        self.step_model = torch.compile(self.train_model) if self.config.compile else self.train_model

    def _observers(self, progress_bar: bool) -> list[Observer]:
        """Who watches the run besides the evaluation schedule: all of them, in plain sight."""
        c = self.config
        # Every rank builds it, so a missing tensorboard package stops all processes at the start.
        tensorboard = TensorBoardLogger(self.run_dir) if c.tensorboard else None
        if not self.dist.is_main:
            return []  # one voice: rank 0 alone shows, samples and writes curves
        observers: list[Observer] = []
        if c.sample_every:
            prompt_from = self.val_ids if self.framing.can_score(self.val_ids) else self.data.split("train")
            observers.append(SampleLogger(self.model, self.framing, prompt_from, self.data.vocab,
                                          every=c.sample_every, length=c.sample_length))
        if tensorboard is not None:
            observers.append(tensorboard)
        if progress_bar:
            observers.append(progress_display())
        return observers

    @property
    def progress(self) -> Progress:
        """The run's counters (its ``RunState``'s)."""
        return self.state.progress

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
            loss, self.state.hidden = self.framing.loss(self.step_model, x, y, self.state.hidden)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        return loss.detach()

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast when asked: matmuls in bfloat16, weights, loss and optimizer in fp32."""
        if self.config.precision == Precision.BF16:
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
        state, p = self.state, self.state.progress
        stops = StopRules(self.config, self.dist, len(self.batches), self.clock)
        window = _LossWindow(self.device, self.clock)
        self.callbacks.emit(RunStart(p.step, stops.total_steps(), self.config.time_budget))
        with stop_on_sigint(self.stop_requested) as interrupt:
            state.finish_epoch_if_read(len(self.batches))
            reason = stops.reason(p, interrupt)
            while reason is None:
                if p.batch == 0:
                    state.hidden = None  # each epoch reads the text from its start
                for k, x, y in self.batches.iterate(p.epoch, p.batch):
                    self._set_lr(stops.spent(p))
                    loss = self.train_step(x, y)
                    window.add(loss)
                    state.epoch_sum += loss.double() * len(y)
                    p.epoch_samples += len(y)
                    p.step, p.batch = p.step + 1, k + 1
                    self.callbacks.emit(StepEnd(p.step, p.epoch, loss, x, y))
                    reason = self._after_step(window, stops, interrupt)
                    if reason:
                        break
                else:  # a turn that trained nothing must still see the clock and Ctrl-C
                    state.finish_epoch_if_read(len(self.batches))
                    reason = stops.reason(p, interrupt)
        if self.reporter.last_step != p.step:
            self.reporter.report(window.mean(self.dist), False, stops.elapsed)
        else:  # counters moved on at the epoch's end
            self.checkpoints.gather()
            self.checkpoints.save_last()
        self.callbacks.emit(RunEnd(p.step, reason))
        log.info("stopped after step %d (%s)", p.step, reason)
        return TrainResult(self.run_dir, p, reason or "", state.last_eval, self.dist.is_main)

    def _set_lr(self, spent: float) -> None:
        factor = lr_factor(self.config, self.progress.step, spent)
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr * factor

    def _after_step(self, window: _LossWindow, stops: StopRules, interrupt: threading.Event) -> str | None:
        """Log points, evaluations and the end of an epoch; why to stop, if it is time."""
        p, c = self.state.progress, self.config
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
        self.state.finish_epoch_if_read(len(self.batches))
        return stops.reason(p, interrupt, agree=log_point)


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
