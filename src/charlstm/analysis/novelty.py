"""How much of a sample is copied from the training text: n-gram overlap, longest copied span, real words.

Definitions (the report prints these figures; the tests pin them):

- **n-gram share**: of the sample's ``len(sample) - n + 1`` overlapping character n-grams, counted
  with repeats, the fraction that occur verbatim somewhere in the training text. A sample shorter
  than ``n`` has no n-grams: the share is ``None`` (the report shows "n/a").
- **longest copied span**: the longest substring of the sample that occurs verbatim in the training
  text (the first such one when several tie); ``""`` when no character of the sample occurs there.
- **word**: a maximal run of letters (any script), where an apostrophe (``'`` or the typographic
  U+2019, read as ``'``) between two letters continues the word (``don't``, ``o'clock``),
  lowercased. Digits, underscores and every other character separate words; an apostrophe at a
  word's edge (a quote mark) is not part of it.
- **word share**: of the sample's words, counted with repeats, the fraction that are also words of
  the training text; ``None`` when the sample holds no word. Words cut by the sample's start or
  end count as they stand, so a cut word may count as invented.

N-gram sets hold 64-bit hashes (two independent 31-bit polynomial hashes modulo primes) rather
than strings: a few MB of text has millions of distinct 20-grams, which as a Python set of
strings would take hundreds of MB and seconds to build. A false match needs both hashes to
collide, odds of about (distinct n-grams) / 2**62 per query, negligible against the figures
shown. The longest span is exact: every candidate is confirmed by a substring search in the text.

Items (a model of a list of things, makemore's measure): a generated item, compared whole and
exactly with the run's list, is **in the training list** (an item of the train split), **held
out** (an item of the list that only the val or test split holds: real, never seen in training)
or **new**. Where the list gives an item exactly one label, that label *decides* it: an item
generated for label L and decided by L **matches** its label.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from charlstm.data.prepared import open_prepared
from charlstm.errors import ConfigError, CorpusError
from charlstm.framing.items import decode_items
from charlstm.generation.items import Item, ItemDraw, items_info
from charlstm.runs.folder import data_dir
from charlstm.runs.loading import LoadedModel

DEFAULT_NS = (10, 20)  # the report's n-gram lengths: 10 ~ two words, 20 ~ a short phrase
# Short n-grams indexed only to rule out span candidates: without them a sample whose longest
# copy is under 10 characters (an untrained model) costs a full scan of the text per character.
SPAN_FILTER_NS = (4, 7)

WORD = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*")  # [^\W\d_] is "a letter" in any script

# Two primes just under 2**31 and bases below them: acc * base + code stays below 2**62, so
# uint64 arithmetic never wraps before the modulo (a wrapping hash would be a weaker one).
_PRIMES = (np.uint64(2_147_483_647), np.uint64(2_147_483_629))
_BASES = (np.uint64(911_382_323), np.uint64(972_663_749))


def words(text: str) -> list[str]:
    """The words of ``text``, lowercased, in order (see the module docstring for what a word is)."""
    return [w.lower().replace("\u2019", "'") for w in WORD.findall(text)]


def _ngram_hashes(text: str, n: int) -> np.ndarray:
    """(len(text) - n + 1,) uint64: one hash per overlapping n-gram of ``text``."""
    count = len(text) - n + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint64)
    # UTF-32 gives one 32-bit code point per character, so string index == array index.
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    parts = []
    for prime, base in zip(_PRIMES, _BASES, strict=True):
        acc = np.zeros(count, dtype=np.uint64)
        for k in range(n):  # Horner's rule over all windows at once: n vector steps, not count * n
            acc *= base
            acc += codes[k : k + count]
            acc %= prime
        parts.append(acc)
    return (parts[0] << np.uint64(32)) | parts[1]


def _sorted_distinct(values: np.ndarray) -> np.ndarray:
    """np.unique by sorting in place: np.unique itself is ~10x slower on millions of uint64."""
    values.sort()
    keep = np.ones(len(values), dtype=bool)
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values[keep]


class NoveltyIndex:
    """A training text prepared once for the novelty measures of many samples.

    Holds the sorted distinct n-gram hashes per n (built on first use, then kept: about a second
    per n for a few MB of text) and the set of the text's words; each sample then costs a few ms.
    ``ns`` are the n-gram lengths ``novelty`` reports.
    """

    def __init__(self, training_text: str, ns: Iterable[int] = DEFAULT_NS):
        self.text = training_text
        self.ns = tuple(sorted(set(ns)))
        if any(n < 1 for n in self.ns):
            raise ConfigError("n-gram lengths must be at least 1")
        self._ngrams: dict[int, np.ndarray] = {}

    @cached_property
    def word_set(self) -> frozenset[str]:
        """The text's distinct words."""
        return frozenset(words(self.text))

    def _table(self, n: int) -> np.ndarray:
        """Sorted distinct hashes of the text's n-grams."""
        if n not in self._ngrams:
            self._ngrams[n] = _sorted_distinct(_ngram_hashes(self.text, n))
        return self._ngrams[n]

    def _hits(self, sample: str, n: int) -> np.ndarray:
        """(len(sample) - n + 1,) bool: whether each n-gram of ``sample`` occurs in the text."""
        known = self._table(n)
        hashes = _ngram_hashes(sample, n)
        if len(known) == 0:
            return np.zeros(len(hashes), dtype=bool)
        where = np.minimum(np.searchsorted(known, hashes), len(known) - 1)
        return known[where] == hashes

    def ngram_overlap(self, sample: str, n: int) -> float | None:
        """Share of the sample's n-grams found in the text; None when the sample is shorter than n."""
        if n < 1:
            raise ConfigError("n-gram lengths must be at least 1")
        hits = self._hits(sample, n)
        return float(hits.mean()) if len(hits) else None

    def word_overlap(self, sample: str) -> float | None:
        """Share of the sample's words that are words of the text; None when it has no word."""
        found = words(sample)
        if not found:
            return None
        return sum(w in self.word_set for w in found) / len(found)

    def longest_copied_span(self, sample: str) -> str:
        """The longest substring of ``sample`` found verbatim in the text (the first, on ties).

        Tries each start once, and only to beat the best length so far: ``sample[i:i+best+1] in
        text``, extending while it holds. Any substring of a copied span is copied too, so a start
        that cannot beat ``best + 1`` cannot beat anything longer: at most 2 * len(sample)
        searches. A candidate with an n-gram absent from the index cannot be in the text, so the
        index rules most candidates out before the (slow, exact) search of the whole text.
        """
        # misses[n][j]: how many of the n-grams starting before j the text lacks (a prefix sum), so
        # "does sample[i:i+m] hold an n-gram the text lacks" is one subtraction.
        misses = {
            n: np.concatenate([[0], np.cumsum(~self._hits(sample, n))]) for n in {*self.ns, *SPAN_FILTER_NS}
        }
        best, best_start = 0, 0
        for i in range(len(sample)):
            while i + best < len(sample) and self._may_occur(misses, i, best + 1) and (
                sample[i : i + best + 1] in self.text
            ):
                best, best_start = best + 1, i
        return sample[best_start : best_start + best]

    def _may_occur(self, misses: dict[int, np.ndarray], start: int, length: int) -> bool:
        """False when sample[start:start+length] holds an n-gram the text lacks (so cannot occur)."""
        fitting = [n for n in sorted(misses) if n <= length]
        if not fitting:
            return True
        n = fitting[-1]  # the longest n-gram that fits rules out the most
        stop = start + length - n + 1  # n-gram starts start .. stop - 1 lie inside the candidate
        return misses[n][stop] - misses[n][start] == 0

    def novelty(self, sample: str) -> dict[str, Any]:
        """Every measure for one sample, keyed for the report and JSON."""
        span = self.longest_copied_span(sample)
        return {
            **{f"ngram_{n}": self.ngram_overlap(sample, n) for n in self.ns},
            "longest_copied_span": span,
            "longest_copied_length": len(span),
            "word_overlap": self.word_overlap(sample),
        }



ITEM_GROUPS = ("train", "held_out", "new")  # item_novelty's keys, in the order makemore prints them


@dataclass(frozen=True)
class ListItems:
    """A records run's list, read once, to sort many generated items against."""

    train: set[str]  # the train split's items
    held_out: set[str]  # items of the val and test splits that the train split lacks
    labels: tuple[str, ...]  # the model's labels; () for a list without
    decided: dict[str, str]  # item -> its label, for the items the list gives exactly one

    def group(self, text: str) -> str:
        return "train" if text in self.train else "held_out" if text in self.held_out else "new"


def list_items(loaded: LoadedModel) -> ListItems:
    """The run's list from its data folder: every split, each item with the label it was given."""
    info = items_info(loaded)
    run_dir = loaded.run_dir
    if run_dir is None:
        raise CorpusError(f"{loaded.path}: the item measures need the run's list; this checkpoint is "
                          "not in its run folder")
    data = open_prepared(data_dir(run_dir))
    found: dict[str, list[tuple[str, str | None]]] = {}
    for split in ("train", "val", "test"):
        found[split] = [(text, info.label_of(start))
                        for start, text in decode_items(data.split(split), loaded.vocab)]
    train = {item for item, _ in found["train"]}
    labels_of: dict[str, set[str | None]] = {}
    for item, label in (pair for pairs in found.values() for pair in pairs):
        labels_of.setdefault(item, set()).add(label)
    decided = {item: next(iter(labels)) for item, labels in labels_of.items()
               if len(labels) == 1 and None not in labels}
    return ListItems(train, set(labels_of) - train, tuple(info.labels), decided)


def item_novelty(known: ListItems | LoadedModel, draws: ItemDraw | Sequence[Item]) -> dict[str, Any]:
    """How many generated items are training items, held-out items or new, and their shares.

    ``known``: the run's list, or a model whose list to read (``list_items``; to score many
    draws, read it once). Figures: ``items``, ``counts`` and ``shares`` keyed by ``ITEM_GROUPS``
    (shares None when there are no items), ``cut``. A labelled list adds ``decided``,
    ``label_match`` and ``label_match_share`` at each level, and ``labels``: label -> the same
    figures for the items generated for it.
    """
    known = known if isinstance(known, ListItems) else list_items(known)
    items = draws.items if isinstance(draws, ItemDraw) else list(draws)
    figures = _item_figures(items, known)
    if known.labels:
        figures["labels"] = {label: _item_figures([i for i in items if i.label == label], known)
                             for label in known.labels}
    return figures


def _item_figures(items: Sequence[Item], known: ListItems) -> dict[str, Any]:
    counts = Counter(known.group(item.text) for item in items)
    figures: dict[str, Any] = {
        "items": len(items),
        "counts": {group: counts[group] for group in ITEM_GROUPS},
        "shares": {group: counts[group] / len(items) if items else None for group in ITEM_GROUPS},
        "cut": sum(not item.complete for item in items),  # reached max_item_chars before an end
    }
    if known.labels:
        decided = [item for item in items if item.text in known.decided]
        match = sum(known.decided[item.text] == item.label for item in decided)
        figures |= {"decided": len(decided), "label_match": match,
                    "label_match_share": match / len(decided) if decided else None}
    return figures
