"""How the next character is chosen: SampleConfig."""

from __future__ import annotations

from dataclasses import dataclass

from charlstm.config.choices import UnknownPolicy, coerce_choices
from charlstm.config.ranges import Range, check_ranges
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
        if self.greedy and self.temperature == 0:  # greedy ignores the temperature; 0 says the same
            object.__setattr__(self, "temperature", 1.0)
        if self.temperature == 0:
            raise ConfigError("temperature must be positive; for the most likely character at every "
                              "step set greedy", hint="--greedy")
        check_ranges(self, SAMPLE_RANGES)
        if self.temperature < GREEDY_BELOW:
            object.__setattr__(self, "greedy", True)
        if self.unknown == UnknownPolicy.REPLACE and self.replacement is None:
            raise ConfigError("unknown replace needs the replacement character to put in their place",
                              hint='--replacement " "')


# A temperature this small leaves float32 logits no choice but the most likely character, and
# scaling by it underflows (to 0, or a NaN against an infinite noise draw): it is greedy.
GREEDY_BELOW = 1e-30

SAMPLE_RANGES = {
    "length": Range(0, 10**8),
    # Finite and at most 100, as the service takes it: past that every model is all but uniform.
    "temperature": Range(0, 100, low_open=True),
    "top_k": Range(1, 65_536), "top_p": Range(0, 1, low_open=True),
    "num_samples": Range(1, 10_000),  # one batch: each sample is a row of state in memory
    "seed": Range(0, 2**63, high_open=True),  # torch's seeds; the service takes the same
}
