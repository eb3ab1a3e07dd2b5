"""How the next character is chosen: SampleConfig."""

from __future__ import annotations

from dataclasses import dataclass, field

from charlstm.config.choices import UnknownPolicy, coerce_choices
from charlstm.config.ranges import Range, check_ranges
from charlstm.errors import ConfigError


@dataclass(frozen=True)
class SampleConfig:
    """How the next character is chosen."""

    length: int = field(default=500, metadata={"help": "Characters to generate after the prompt."})
    temperature: float = field(default=1.0, metadata={
        "help": "Divides the logits: below 1 sharper, above 1 flatter."})
    top_k: int | None = field(default=None, metadata={
        "help": "Keep only the k most likely characters (unset: all)."})
    top_p: float | None = field(default=None, metadata={
        "help": "Keep the smallest set of characters whose probability reaches p (unset: all)."})
    min_p: float | None = field(default=None, metadata={
        "help": "Keep the characters at least min_p times as likely as the most likely one, after "
                "the temperature (unset: all)."})
    dry_multiplier: float | None = field(default=None, metadata={
        "help": "Repetition control (DRY): penalise the character that would extend a repeat of an "
                "earlier stretch longer than dry_allowed_length by this x dry_base^(excess) "
                "(unset: off; 0.8 is a good start)."})
    dry_base: float = field(default=1.75, metadata={
        "help": "How fast the DRY penalty grows with the repeat's length."})
    dry_allowed_length: int = field(default=12, metadata={
        "help": "Repeats up to this many characters go unpenalised (words and phrases recur)."})
    greedy: bool = field(default=False, metadata={
        "help": "Always the most likely character (the tutorial's argmax)."})
    num_samples: int = field(default=1, metadata={"help": "Samples generated together in one batch."})
    best_of: int = field(default=1, metadata={
        "help": "Draw this many for each sample and keep the one with the highest mean "
                "log-probability under the model (stream models; printed whole, not streamed)."})
    beam: int | None = field(default=None, metadata={
        "help": "Beam search of this width for the most likely continuation instead of a draw, "
                "ranked by mean log-probability per character (1: greedy; stream models; the "
                "sampling settings do not apply, dry_* does)."})
    seed: int | None = field(default=None, metadata={
        "help": "Seed of the draws; unset: a fresh random seed, reported so it can be reused."})
    unknown: UnknownPolicy = field(default=UnknownPolicy.ERROR, metadata={
        "help": "Prompt characters outside the vocabulary: error lists them, drop leaves them out, "
                "replace puts the replacement character in their place."})
    replacement: str | None = field(default=None, metadata={
        "help": "The character that unknown replace puts in place of unknown ones."})

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
        if self.beam is not None:
            self._check_beam()
        if self.unknown == UnknownPolicy.REPLACE and self.replacement is None:
            raise ConfigError("unknown replace needs the replacement character to put in their place",
                              hint='--replacement " "')

    def _check_beam(self) -> None:
        sampling = [name for name, value in (
            ("temperature", self.temperature != 1.0), ("greedy", self.greedy), ("top_k", self.top_k),
            ("top_p", self.top_p), ("min_p", self.min_p), ("best_of", self.best_of > 1)) if value]
        if sampling:
            raise ConfigError(f"beam search takes the most likely continuation; {', '.join(sampling)} "
                              "applies to sampling: leave it out with beam")
        if self.num_samples > self.beam:
            raise ConfigError(f"a beam of {self.beam} keeps {self.beam} continuations: num_samples "
                              f"{self.num_samples} asks for more", hint=f"--beam {self.num_samples}")


# A temperature this small leaves float32 logits no choice but the most likely character, and
# scaling by it underflows (to 0, or a NaN against an infinite noise draw): it is greedy.
GREEDY_BELOW = 1e-30

SAMPLE_RANGES = {
    "length": Range(0, 10**8),
    # Finite and at most 100, as the service takes it: past that every model is all but uniform.
    "temperature": Range(0, 100, low_open=True),
    "top_k": Range(1, 65_536), "top_p": Range(0, 1, low_open=True),
    "min_p": Range(0, 1, low_open=True),  # 1: only the best (and its ties); near 0: all
    "num_samples": Range(1, 10_000),  # one batch: each sample is a row of state in memory
    "best_of": Range(1, 64), "beam": Range(1, 64),
    "dry_multiplier": Range(0, 100, low_open=True), "dry_base": Range(1, 10, low_open=True),
    "dry_allowed_length": Range(1, 1000),  # best_of x num_samples rows are drawn together
    "seed": Range(0, 2**63, high_open=True),  # torch's seeds; the service takes the same
}
