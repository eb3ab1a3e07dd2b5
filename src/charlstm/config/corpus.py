"""How raw text becomes training text: the corpus settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CorpusConfig:
    """How raw text becomes training text."""

    lowercase: bool = False  # the tutorial lowercases to shrink the vocabulary
    strip_gutenberg: bool = True  # no-op on texts without the markers
    encoding: str = "utf-8"
    # BOM, newlines, NFC, blank lines around the body. Off only to rebuild a text exactly
    # as another tool read it (the Keras tutorial's Python 2 read bytes, '\r' and BOM included).
    normalize: bool = True

