"""Settings of dynamic evaluation (``charlstm eval --dynamic``): DynamicConfig."""

from __future__ import annotations

from dataclasses import dataclass, field

from charlstm.config.ranges import FRACTION, SIZE, Range, check_ranges


@dataclass(frozen=True)
class DynamicConfig:
    """Settings of dynamic evaluation; the defaults were measured (docs/benchmarks.md)."""

    lr: float = field(default=3e-4, metadata={"help": "RMS-normalised step size, one step per segment."})
    seq_len: int = field(default=50, metadata={"help": "Characters per segment: scored, then learnt."})
    decay: float = field(default=0.0, metadata={
        "help": "Pull towards the trained weights at each step (the paper's lambda)."})
    beta2: float = field(default=0.99, metadata={
        "help": "Decay of the running mean square of the gradients."})
    eps: float = field(default=1e-8, metadata={
        "help": "Added to the gradients' root mean square before dividing by it."})

    def __post_init__(self) -> None:
        check_ranges(self, DYNAMIC_RANGES)


DYNAMIC_RANGES = {
    "lr": Range(0, 10, low_open=True), "seq_len": SIZE, "decay": FRACTION,
    "beta2": Range(0, 1, low_open=True, high_open=True), "eps": Range(0, 1, low_open=True),
}
