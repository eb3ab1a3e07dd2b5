"""A list of things prepared as token files: items, their labels, and a fair held-out split.

Each item is written as its start symbol, its characters and the end symbol::

    \x02 t r i c e r a t o p s \x03 \x02 s t e g o s a u r u s \x03 ...     (no labels)
    <herbivore> t r i c e r a t o p s \x03 <carnivore> a l l o s a u r u s \x03   (labels)

A label is one symbol of its own (``LABEL_BASE + k``, Unicode's Private Use Area), written in
the start's place, so a model learns what a label implies and generation can ask for one.
The start and end symbols sort first among the item vocabulary's characters: in every items
vocabulary id 0 is the start and id 1 the end (``START_ID``, ``END_ID``), which is how the
items framing finds item boundaries without the vocabulary.

The held-out split is a seeded random sample of items, not the file's tail: lists are often
sorted, and a tail would hold only the end of the alphabet. Each item goes to val with
probability ``val_fraction`` (to test with ``test_fraction``), by a draw from a generator
seeded with ``seed``, one draw per item in file order, so both passes of the preparation, and
any later one, agree. A duplicate of a held-out item may still be a training item elsewhere
in the list (as in makemore's split): duplicates are the list's weights, and are kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from charlstm.config.choices import RecordFormat
from charlstm.data.records import LABEL_BASE, START
from charlstm.errors import CorpusError

START_ID, END_ID = 0, 1  # ids of START and END in every items vocabulary (they sort first)
_DRAWS = 1 << 16  # split draws made at a time


@dataclass(frozen=True)
class ItemsInfo:
    """What a records run knows of its list besides the vocabulary; travels in every checkpoint."""

    format: RecordFormat
    labels: list[str] = field(default_factory=list)  # label k is the symbol chr(LABEL_BASE + k)
    label_counts: list[int] = field(default_factory=list)  # training items of each label

    def symbol(self, label: str | None) -> str:
        """The start symbol of an item of ``label`` (None: an item without a label)."""
        if label is None:
            return START
        try:
            return chr(LABEL_BASE + self.labels.index(label))
        except ValueError:
            raise CorpusError(f"unknown label {label!r}; this model's labels: "
                              f"{', '.join(repr(x) for x in self.labels)}") from None

    def label_of(self, symbol: str) -> str | None:
        """The label a start symbol stands for (None for START)."""
        k = ord(symbol) - LABEL_BASE
        return self.labels[k] if 0 <= k < len(self.labels) else None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict) -> ItemsInfo:
        """From a data folder's meta.json ``records`` block (which holds more: counts, the split)."""
        return cls(RecordFormat(raw["format"]), list(raw.get("labels", [])),
                   list(raw.get("label_counts", [])))


def split_draws(seed: int) -> Iterator[float]:
    """One uniform draw per item, in file order, from a generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    while True:
        yield from rng.random(_DRAWS).tolist()


def split_of(draw: float, val_fraction: float, test_fraction: float) -> str:
    if draw < val_fraction:
        return "val"
    return "test" if draw < val_fraction + test_fraction else "train"
