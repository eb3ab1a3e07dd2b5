"""How a model is trained: TrainConfig, and which of its fields a resumed run may change."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from charlstm.config.choices import (
    CheckpointMetric,
    FramingName,
    LRSchedule,
    Optimizer,
    Precision,
    coerce_choices,
)
from charlstm.config.ranges import COUNT, FRACTION, SIZE, Range, check_ranges
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
        check_ranges(self, TRAIN_RANGES)
        check_split_fractions(self.val_fraction, self.test_fraction)
        check_checkpoint_name(self.checkpoint_name)


TRAIN_RANGES = {
    "seq_len": SIZE, "batch_size": SIZE, "epochs": Range(1, 10**9), "max_steps": Range(1, 10**12),
    "time_budget": Range(0, 10**8, low_open=True),  # seconds: about three years
    "lr": Range(0, 10, low_open=True), "beta2": FRACTION, "adam_eps": Range(0, 1, low_open=True),
    "weight_decay": Range(0, 10), "grad_clip": Range(0, 10**6), "warmup_steps": COUNT,
    "min_lr_ratio": Range(0, 1), "val_fraction": FRACTION, "test_fraction": FRACTION,
    "eval_every": COUNT, "eval_max_chars": Range(0, 10**15), "keep_best": Range(1, 10**6),
    "seed": Range(0, 2**32, high_open=True),  # NumPy's seeds stop there
    "log_every": Range(1, 10**9), "sample_every": COUNT, "sample_length": Range(0, 10**6),
}

def check_split_fractions(val_fraction: float, test_fraction: float) -> None:
    """The held-out shares of a text, each in [0, 1) and leaving some text to train on."""
    check_ranges(SimpleNamespace(val_fraction=val_fraction, test_fraction=test_fraction),
                 {"val_fraction": FRACTION, "test_fraction": FRACTION})
    if val_fraction + test_fraction >= 1:
        raise ConfigError("val_fraction + test_fraction must leave some text to train on (below 1)")


CHECKPOINT_FIELDS = {"epoch": 1, "step": 1, "loss": 1.0}  # what checkpoint_name may use
_LONGEST_FIELDS = {"epoch": 10**9, "step": 10**12, "loss": 708.123456789}  # about its longest (MAX_LOSS)


def check_checkpoint_name(template: str) -> None:
    """A checkpoint name is a format of epoch, step and loss that gives a file name in the run folder.

    Checked before training, so a bad one is not found at the first best checkpoint, and a name
    never reaches outside the run folder (where pruning would delete files).
    """
    try:
        name = template.format(**CHECKPOINT_FIELDS)
        longest = template.format(**_LONGEST_FIELDS)
    except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
        raise ConfigError(f"checkpoint_name {template!r} is not a usable name ({type(exc).__name__}: "
                          f"{exc}); it may use {{epoch}}, {{step}} and {{loss}} with format specs such "
                          "as {step:06d} or {loss:.4f}") from None
    if (not name or name in (".", "..") or any(c in name for c in "/\\\0:") or name.startswith(".tmp-")
            or name == "last"):
        raise ConfigError(f"checkpoint_name {template!r} gives {name!r}: it must be a plain file name in "
                          "the run folder (no folder part, not 'last', not starting '.tmp-')")
    if len(longest.encode("utf-8")) > 200:  # file systems stop at 255 bytes, with the suffix
        raise ConfigError(f"checkpoint_name {template!r} can give names longer than 200 bytes")


# Settings a resumed run may change: when to stop, where to run, how often to report.
RESUMABLE_FIELDS = frozenset({
    "epochs", "max_steps", "time_budget", "device", "eval_every", "eval_max_chars", "log_every", "keep_best",
    "sample_every", "sample_length", "precision", "compile", "tensorboard",
})
