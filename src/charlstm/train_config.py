"""What a training run is told: TrainConfig, its counters and results, the schedule, the optimizer."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from charlstm.corpus import CorpusConfig
from charlstm.errors import ConfigError
from charlstm.model import CharLSTM, ModelConfig


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained; the ``default`` preset's values are the defaults here."""

    framing: str = "stream"  # stream: loss on every position, state carried; window: tutorial
    seq_len: int = 128  # T: BPTT length (stream) or window length (window)
    batch_size: int = 32  # B: parallel streams or windows per step
    epochs: int | None = 50  # whichever of epochs / max_steps / time_budget comes first
    max_steps: int | None = None
    time_budget: float | None = None  # seconds of wall clock for this invocation
    optimizer: str = "adamw"  # adam | adamw
    lr: float = 3e-3
    beta2: float = 0.99  # char models see few tokens per step; 0.99 adapts faster than 0.999
    adam_eps: float = 1e-8
    weight_decay: float = 0.01
    grad_clip: float = 1.0  # max gradient norm; 0 turns clipping off
    lr_schedule: str = "cosine"  # cosine: warmup then decay over the run's budget; constant
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1  # cosine ends at lr * min_lr_ratio
    val_fraction: float = 0.1  # the last 10% of the text is held out
    test_fraction: float = 0.0
    eval_every: int = 200  # steps between evaluations; 0: at epoch ends only
    eval_max_chars: int | None = None  # cap on scored held-out characters per evaluation
    checkpoint_metric: str = "val_loss"  # val_loss | train_loss (epoch mean, as Keras's `loss`)
    checkpoint_name: str = "best-{epoch:02d}-{step:06d}-{loss:.4f}"  # fields: epoch, step, loss
    keep_best: int = 3  # how many improvements to keep on disk
    shuffle: bool = True  # window framing: new order every epoch, as Keras's fit
    seed: int = 1337  # covers Python, NumPy and torch
    device: str = "auto"  # auto | cpu | cuda | mps
    precision: str = "fp32"  # bf16: autocast matmuls to bfloat16 (GPUs with bf16); weights stay fp32
    compile: bool = False  # torch.compile the model (CUDA); pays a warm-up, then may run faster
    log_every: int = 25  # steps between progress-bar updates (and NaN checks)
    sample_every: int = 0  # steps between short samples in the log, as the Keras example prints; 0: off
    sample_length: int = 200

    def __post_init__(self) -> None:
        checks = {
            "framing must be stream or window": self.framing in ("stream", "window"),
            "optimizer must be adam or adamw": self.optimizer in ("adam", "adamw"),
            "lr_schedule must be cosine or constant": self.lr_schedule in ("cosine", "constant"),
            "checkpoint_metric must be val_loss or train_loss": self.checkpoint_metric
            in ("val_loss", "train_loss"),
            "seq_len, batch_size and log_every must be positive": min(
                self.seq_len, self.batch_size, self.log_every
            )
            > 0,
            "sample_every and sample_length must be >= 0": min(self.sample_every, self.sample_length) >= 0,
            "precision must be fp32 or bf16": self.precision in ("fp32", "bf16"),
            "lr must be positive": self.lr > 0,
            "keep_best must be at least 1": self.keep_best >= 1,
        }
        for message, ok in checks.items():
            if not ok:
                raise ConfigError(message)
        for name in ("epochs", "max_steps", "time_budget", "eval_max_chars"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be positive")


# Settings a resumed run may change: when to stop, where to run, how often to report.
RESUMABLE_FIELDS = {
    "epochs", "max_steps", "time_budget", "device", "eval_every", "log_every", "keep_best", "sample_every",
    "sample_length", "precision", "compile",
}
SAMPLE_TEMPERATURES = (0.2, 0.5, 1.0)


@dataclass
class Progress:
    """Counters that locate a run exactly; saved in every checkpoint."""

    step: int = 0
    epoch: int = 0  # the epoch in progress, from 0
    batch: int = 0  # the next batch of that epoch
    epoch_loss_sum: float = 0.0  # sum over the epoch's samples, for its mean training loss
    epoch_samples: int = 0
    best: float | None = None


@dataclass
class TrainResult:
    run_dir: Path
    progress: Progress
    stop_reason: str
    last_eval: dict[str, Any] = field(default_factory=dict)


def lr_factor(config: TrainConfig, step: int, budget_fraction: float) -> float:
    """Multiplier of ``config.lr`` at ``step``; ``budget_fraction`` is how much of the run is spent."""
    if config.lr_schedule == "constant":
        return 1.0
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, budget_fraction)))
    return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine


def make_optimizer(model: CharLSTM, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]  # Keras presets freeze bias_hh
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(
        params, lr=config.lr, betas=(0.9, config.beta2), eps=config.adam_eps,
        weight_decay=config.weight_decay,
    )


def config_record(model: ModelConfig, train: TrainConfig, corpus: CorpusConfig, **extra: Any) -> dict:
    return {"model": asdict(model), "train": asdict(train), "corpus": asdict(corpus), **extra}
