"""The range of every number a user sets, checked where the config is built.

A config class lists its numeric fields in a ``RANGES`` table and calls ``check_ranges`` in
``__post_init__``: NaN and infinity are refused everywhere (no setting of charlstm means
anything at either), and so is a value outside its range, with a message naming the setting,
its range and the value. Upper bounds sit far beyond any useful value; they exist so a typo
(``--num-samples 100000000000``) is an error at once, not memory growing for minutes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from charlstm.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """An interval of allowed values: [low, high], with either end open when asked."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        def show(x: float) -> str:
            if isinstance(x, float):
                return f"{x:g}"
            if x >= 2**20 and x & (x - 1) == 0:  # a power of two, as a seed's bound
                return f"2**{x.bit_length() - 1}"
            return f"{x:,}"

        return (f"{'(' if self.low_open else '['}{show(self.low)}, "
                f"{show(self.high)}{')' if self.high_open else ']'}")


def check_ranges(config: object, ranges: Mapping[str, Range]) -> None:
    """Raise ``ConfigError`` for the first field of ``config`` that is not finite or not in range.

    None (a setting left unset) is always allowed.
    """
    for name, allowed in ranges.items():
        value = getattr(config, name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name} must be a number, not {value!r}")
        if not math.isfinite(value) or value not in allowed:
            raise ConfigError(f"{name} must be in {allowed}, not {value}")


FRACTION = Range(0.0, 1.0, high_open=True)  # dropout, a held-out share: 1 would leave nothing
COUNT = Range(0, 10**9)  # steps, intervals
SIZE = Range(1, 2**16)  # a dimension: 65,536 floats a row already needs a big GPU
