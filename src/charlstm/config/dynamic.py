"""Settings of dynamic evaluation (``charlstm eval --dynamic``): DynamicConfig."""

from __future__ import annotations

from dataclasses import dataclass

from charlstm.errors import ConfigError


@dataclass(frozen=True)
class DynamicConfig:
    """Settings of dynamic evaluation; the defaults were measured (docs/benchmarks.md)."""

    lr: float = 3e-4  # RMS-normalised step per segment
    seq_len: int = 50  # characters per segment: scored, then learnt
    decay: float = 0.0  # pull towards the trained weights per step (the paper's lambda)
    beta2: float = 0.99  # running mean square of the gradients
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.seq_len < 1:
            raise ConfigError("dynamic evaluation needs lr > 0 and seq_len >= 1")
        if not 0.0 <= self.decay < 1.0 or not 0.0 < self.beta2 < 1.0:
            raise ConfigError("dynamic evaluation needs decay in [0, 1) and beta2 in (0, 1)")
