"""How a model is trained: TrainConfig, and which of its fields a resumed run may change."""

from __future__ import annotations

from dataclasses import dataclass

from charlstm.config.choices import (
    CheckpointMetric,
    FramingName,
    LRSchedule,
    Optimizer,
    Precision,
    coerce_choices,
)
from charlstm.errors import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained; the ``default`` preset's values are the defaults here."""

    framing: FramingName = FramingName.STREAM
    seq_len: int = 128  # T: BPTT length (stream) or window length (window)
    batch_size: int = 32  # B: parallel streams or windows per step
    epochs: int | None = 50  # whichever of epochs / max_steps / time_budget comes first
    max_steps: int | None = None
    time_budget: float | None = None  # seconds of wall clock for this invocation
    optimizer: Optimizer = Optimizer.ADAMW
    lr: float = 3e-3
    beta2: float = 0.99  # char models see few tokens per step; 0.99 adapts faster than 0.999
    adam_eps: float = 1e-8
    weight_decay: float = 0.01
    grad_clip: float = 1.0  # max gradient norm; 0 turns clipping off
    lr_schedule: LRSchedule = LRSchedule.COSINE
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1  # cosine ends at lr * min_lr_ratio
    val_fraction: float = 0.1  # the last 10% of the text is held out
    test_fraction: float = 0.0
    eval_every: int = 200  # steps between evaluations; 0: at epoch ends only
    # Held-out characters an evaluation scores: the split's first ones, the same every time, so
    # curves compare; 100k costs about 4% of the 200 steps between evaluations (default preset,
    # 2 CPU cores: about 3 s against 90 s; docs/benchmarks.md). 0: all.
    eval_max_chars: int = 100_000
    checkpoint_metric: CheckpointMetric = CheckpointMetric.VAL_LOSS
    checkpoint_name: str = "best-{epoch:02d}-{step:06d}-{loss:.4f}"  # fields: epoch, step, loss
    keep_best: int = 3  # how many improvements to keep on disk
    shuffle: bool = True  # window framing: new order every epoch, as Keras's fit
    seed: int = 1337  # covers Python, NumPy and torch
    device: str = "auto"  # auto | cpu | cuda | mps
    precision: Precision = Precision.FP32  # bf16 wants a GPU that has it
    compile: bool = False  # torch.compile the model (CUDA); pays a warm-up, then may run faster
    log_every: int = 25  # steps between progress-bar updates (and NaN checks)
    sample_every: int = 0  # steps between short samples in the log, as the Keras example prints; 0: off
    sample_length: int = 200
    init_from: str | None = None  # fine-tuning: the run or checkpoint whose weights a new run starts from
    strict_vocab: bool = False  # fine-tuning: refuse characters the model lacks instead of adding them
    tensorboard: bool = False  # also write RUN/tensorboard/ (needs the tensorboard extra)

    def __post_init__(self) -> None:
        coerce_choices(self)
        if self.eval_max_chars is None:  # how runs before the cap wrote "all"
            object.__setattr__(self, "eval_max_chars", 0)
        checks = {
            "seq_len, batch_size and log_every must be positive": min(
                self.seq_len, self.batch_size, self.log_every
            )
            > 0,
            "sample_every and sample_length must be >= 0": min(self.sample_every, self.sample_length) >= 0,
            "lr must be positive": self.lr > 0,
            "keep_best must be at least 1": self.keep_best >= 1,
            "eval_every must be >= 0 (0: at epoch ends only)": self.eval_every >= 0,
            "eval_max_chars must be >= 0 (0: all)": self.eval_max_chars >= 0,
            "weight_decay, grad_clip and warmup_steps must be >= 0": min(
                self.weight_decay, self.grad_clip, self.warmup_steps) >= 0,
            "adam_eps must be positive": self.adam_eps > 0,
            "beta2 must be in [0, 1)": 0.0 <= self.beta2 < 1.0,
            "min_lr_ratio must be in [0, 1]": 0.0 <= self.min_lr_ratio <= 1.0,
            "seed must be in [0, 2**32)": 0 <= self.seed < 2**32,  # NumPy's seeds stop there
        }
        for message, ok in checks.items():
            if not ok:
                raise ConfigError(message)
        for name in ("epochs", "max_steps", "time_budget"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be positive")


# Settings a resumed run may change: when to stop, where to run, how often to report.
RESUMABLE_FIELDS = frozenset({
    "epochs", "max_steps", "time_budget", "device", "eval_every", "eval_max_chars", "log_every", "keep_best",
    "sample_every", "sample_length", "precision", "compile", "tensorboard",
})
