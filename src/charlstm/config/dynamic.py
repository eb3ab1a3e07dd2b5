"""Settings of dynamic evaluation (``charlstm eval --dynamic``): DynamicConfig."""

from __future__ import annotations

from dataclasses import dataclass

from charlstm.config.ranges import FRACTION, SIZE, Range, check_ranges


@dataclass(frozen=True)
class DynamicConfig:
    """Settings of dynamic evaluation; the defaults were measured (docs/benchmarks.md)."""

    lr: float = 3e-4  # RMS-normalised step per segment
    seq_len: int = 50  # characters per segment: scored, then learnt
    decay: float = 0.0  # pull towards the trained weights per step (the paper's lambda)
    beta2: float = 0.99  # running mean square of the gradients
    eps: float = 1e-8

    def __post_init__(self) -> None:
        check_ranges(self, DYNAMIC_RANGES)


DYNAMIC_RANGES = {
    "lr": Range(0, 10, low_open=True), "seq_len": SIZE, "decay": FRACTION,
    "beta2": Range(0, 1, low_open=True, high_open=True), "eps": Range(0, 1, low_open=True),
}
