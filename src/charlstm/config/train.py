"""How a model is trained: TrainConfig, and which of its fields a resumed run may change."""

from __future__ import annotations

from dataclasses import dataclass, field
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

    framing: FramingName = field(default=FramingName.STREAM, metadata={
        "help": "stream: loss on every position, state carried across batches; window: the "
                "tutorial's windows of seq_len characters that predict the next one."})
    seq_len: int = field(default=128, metadata={
        "help": "Characters per row and step (T): the BPTT length (stream) or the window (window)."})
    batch_size: int = field(default=32, metadata={
        "help": "Rows per step (B): parallel streams or windows."})
    epochs: int | None = field(default=50, metadata={
        "help": "Passes over the training text; whichever of epochs, max_steps and time_budget comes "
                "first ends the run."})
    max_steps: int | None = field(default=None, metadata={
        "help": "Stop after this many steps (unset: no step limit)."})
    time_budget: float | None = field(default=None, metadata={
        "help": "Seconds of wall clock for this invocation (the command line also reads 90s, 5m, "
                "1h30m; unset: no limit)."})
    optimizer: Optimizer = field(default=Optimizer.ADAMW, metadata={
        "help": "Adam, or AdamW (weight decay decoupled from the gradient step)."})
    lr: float = field(default=3e-3, metadata={"help": "Learning rate (the peak, after warmup)."})
    # Char models see few tokens per step; 0.99 adapts faster than 0.999.
    beta2: float = field(default=0.99, metadata={"help": "Adam's second-moment decay."})
    adam_eps: float = field(default=1e-8, metadata={
        "help": "Adam's epsilon (Keras 2.0: 1e-8, today's Keras: 1e-7)."})
    weight_decay: float = field(default=0.01, metadata={"help": "The optimizer's weight decay."})
    grad_clip: float = field(default=1.0, metadata={"help": "Max gradient norm (0: no clipping)."})
    lr_schedule: LRSchedule = field(default=LRSchedule.COSINE, metadata={
        "help": "cosine: warmup, then cosine decay over the run's limit; constant: lr throughout."})
    warmup_steps: int = field(default=50, metadata={
        "help": "Steps of linear warmup before the cosine decay."})
    min_lr_ratio: float = field(default=0.1, metadata={
        "help": "The cosine decay ends at lr * min_lr_ratio."})
    val_fraction: float = field(default=0.1, metadata={
        "help": "Share of the text held out for validation: the part after the training text."})
    test_fraction: float = field(default=0.0, metadata={
        "help": "Share of the text held out for testing: its very end."})
    eval_every: int = field(default=200, metadata={
        "help": "Steps between evaluations (0: at epoch ends only)."})
    # The split's first characters, the same every time, so curves compare; 100k costs about 4% of
    # the 200 steps between evaluations (default preset, 2 CPU cores: about 3 s against 90 s;
    # docs/benchmarks.md).
    eval_max_chars: int = field(default=100_000, metadata={
        "help": "Held-out characters an evaluation scores, the split's first ones (0, or all on the "
                "command line: every one)."})
    checkpoint_metric: CheckpointMetric = field(default=CheckpointMetric.VAL_LOSS, metadata={
        "help": "What 'best' means: val_loss, or train_loss (the epoch mean, as Keras's loss)."})
    checkpoint_name: str = field(default="best-{epoch:02d}-{step:06d}-{loss:.4f}", metadata={
        "help": "Best checkpoints' file name, a format of the fields epoch, step and loss."})
    keep_best: int = field(default=3, metadata={"help": "How many best checkpoints to keep on disk."})
    shuffle: bool = field(default=True, metadata={
        "help": "Window framing: a new order of the windows every epoch, as Keras's fit."})
    seed: int = field(default=1337, metadata={
        "help": "One seed for Python, NumPy and torch: the same seed, the same run."})
    device: str = field(default="auto", metadata={
        "help": "auto, cpu, cuda, cuda:N or mps (auto: CUDA, then MPS, then the CPU)."})
    precision: Precision = field(default=Precision.FP32, metadata={
        "help": "bf16: autocast matmuls to bfloat16, weights stay fp32 (for devices fast at it)."})
    compile: bool = field(default=False, metadata={
        "help": "torch.compile the model (CUDA): a warm-up, then maybe faster steps."})
    log_every: int = field(default=25, metadata={
        "help": "Steps between progress-bar updates and NaN checks."})
    sample_every: int = field(default=0, metadata={
        "help": "Steps between short samples in the log, as the Keras example prints (0: off)."})
    sample_length: int = field(default=200, metadata={"help": "Characters per logged sample."})
    init_from: str | None = field(default=None, metadata={
        "help": "Fine-tuning: the run or checkpoint whose weights a new run starts from."})
    strict_vocab: bool = field(default=False, metadata={
        "help": "Fine-tuning: refuse characters the model lacks instead of adding them."})
    tensorboard: bool = field(default=False, metadata={
        "help": "Also write losses, bits/char, lr, speed and samples to RUN/tensorboard/ (needs the "
                "tensorboard extra)."})
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
