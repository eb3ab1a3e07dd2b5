"""Naive reference versions that the code in src is checked against: short, slow, obviously right."""

from __future__ import annotations

from collections.abc import Sequence


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first stop sequence it holds, and whether there was one.

    Every prefix is tried in turn: the first that ends with a stop sequence ends the text where
    the longest of those ending there began.
    """
    for end in range(1, len(text) + 1):
        ending = [stop for stop in stops if text[:end].endswith(stop)]
        if ending:
            return text[: end - max(map(len, ending))], True
    return text, False
