"""The vocabulary: an ordered list of characters, with an explicit unknown-character policy."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from charlstm.config.choices import UnknownPolicy
from charlstm.errors import ConfigError, CorpusError, UnknownCharactersError


class Vocab:
    """An ordered list of characters; a character's id is its index.

    Unknown characters follow an explicit policy (``encode``'s ``unknown``):
    ``"error"`` raises listing them, ``"drop"`` removes them, ``"replace"`` maps
    them to ``replacement``, which must itself be in the vocabulary.
    """

    def __init__(self, chars: Sequence[str]):
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise CorpusError("a vocabulary is a list of distinct single characters")
        self.chars = list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.chars == other.chars

    def __repr__(self) -> str:
        return f"Vocab({len(self)} chars)"

    def unknown(self, text: str) -> list[str]:
        """Characters of ``text`` that the vocabulary lacks, sorted."""
        return sorted(set(text) - self.index.keys())

    def encode(self, text: str, unknown: str = UnknownPolicy.ERROR, replacement: str | None = None,
               ) -> np.ndarray:
        """Text to an int64 id array, applying the unknown-character policy."""
        if unknown not in tuple(UnknownPolicy):
            raise ConfigError(f"unknown-character policy must be error, drop or replace, not {unknown!r}")
        missing = self.unknown(text)
        if missing:
            if unknown == UnknownPolicy.ERROR:
                raise UnknownCharactersError(missing)
            if unknown == UnknownPolicy.DROP:
                text = "".join(c for c in text if c in self.index)
            else:
                if replacement is None:
                    raise ConfigError("unknown replace needs the replacement character to put in their place",
                                      hint='--replacement " "')
                if replacement not in self.index:
                    raise CorpusError(f"replacement {replacement!r} is not in the vocabulary")
                text = "".join(c if c in self.index else replacement for c in text)
        return np.fromiter((self.index[c] for c in text), dtype=np.int64, count=len(text))

    def decode(self, ids: Iterable[int]) -> str:
        if isinstance(ids, np.ndarray):
            # A '<U1' array's bytes are UTF-32: one C-level decode, not a Python loop over MBs of ids.
            return np.asarray(self.chars, dtype="<U1")[ids].tobytes().decode("utf-32-le")
        return "".join(self.chars[int(i)] for i in ids)

    def to_list(self) -> list[str]:
        return list(self.chars)
