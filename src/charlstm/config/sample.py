"""How the next character is chosen: SampleConfig."""

from __future__ import annotations

from dataclasses import dataclass

from charlstm.config.choices import UnknownPolicy, coerce_choices
from charlstm.errors import ConfigError


@dataclass(frozen=True)
class SampleConfig:
    """How the next character is chosen."""

    length: int = 500  # characters to generate after the prompt
    temperature: float = 1.0  # <1 sharper, >1 flatter
    top_k: int | None = None  # keep the k most likely characters
    top_p: float | None = None  # keep the smallest set whose probability reaches p
    greedy: bool = False  # always the most likely character (the tutorial's argmax)
    num_samples: int = 1  # samples generated together in one batch
    seed: int | None = None  # None: a fresh random seed, reported so it can be reused
    unknown: UnknownPolicy = UnknownPolicy.ERROR  # prompt characters outside the vocabulary
    replacement: str | None = None  # the character "replace" maps them to

    def __post_init__(self) -> None:
        coerce_choices(self)
        if self.length < 0 or self.num_samples < 1:
            raise ConfigError("length must be >= 0 and num_samples >= 1")
        if self.temperature <= 0:
            raise ConfigError("temperature must be positive (use --greedy for argmax)")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError("top_k must be at least 1")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ConfigError("top_p must be in (0, 1]")
