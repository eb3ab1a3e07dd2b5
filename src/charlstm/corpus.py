"""Text in, clean text and a vocabulary out.

Reading: one or more files, or a directory of ``.txt`` files taken in sorted
name order, joined with a blank line (``SEPARATOR``) so one book's last line
does not run into the next one's first.

Cleaning, in this order: drop a byte-order mark, turn CRLF and CR into LF,
Unicode NFC, strip Project Gutenberg's header and footer when their markers are
present, trim blank lines around the body, optionally lowercase.
"""

from __future__ import annotations

import codecs
import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from charlstm.errors import ConfigError, CorpusError, UnknownCharactersError

SEPARATOR = "\n\n"

# Header: everything through the START line, in both the older "THIS" and the
# newer "THE" wording. Footer: from the first END line (or the older "End of
# Project Gutenberg's ..." line, which precedes it) to the end.
_START = re.compile(r"^\*{3}\s*START OF (?:THIS|THE) PROJECT GUTENBERG EBOOK.*$", re.M | re.I)
_END = re.compile(
    r"^(?:\*{3}\s*END OF (?:THIS|THE) PROJECT GUTENBERG EBOOK.*"
    r"|End of (?:the )?Project Gutenberg'?s? .*)$",
    re.M | re.I,
)


@dataclass(frozen=True)
class CorpusConfig:
    """How raw text becomes training text."""

    lowercase: bool = False  # the tutorial lowercases to shrink the vocabulary
    strip_gutenberg: bool = True  # no-op on texts without the markers
    encoding: str = "utf-8"
    # BOM, newlines, NFC, blank lines around the body. Off only to rebuild a text exactly
    # as another tool read it (the Keras tutorial's Python 2 read bytes, '\r' and BOM included).
    normalize: bool = True


def default_corpus_path() -> Path:
    """The bundled Alice's Adventures in Wonderland (Project Gutenberg #11)."""
    return Path(str(resources.files("charlstm") / "default_corpus" / "wonderland.txt"))


def strip_gutenberg(text: str) -> str:
    """Remove a Project Gutenberg header and footer; text without markers is unchanged."""
    start = _START.search(text)
    if start:
        text = text[start.end() :]
    end = _END.search(text)
    if end:
        text = text[: end.start()]
    return text


def clean_text(text: str, config: CorpusConfig = CorpusConfig()) -> str:
    """Apply the cleaning steps of the module docstring to one document."""
    if config.normalize:
        text = text.removeprefix("\ufeff")
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        text = unicodedata.normalize("NFC", text)
    if config.strip_gutenberg:
        text = strip_gutenberg(text)
    if config.normalize:
        text = text.strip("\n")
    if config.lowercase:
        text = text.lower()
    return text


def clean_prompt(text: str, config: CorpusConfig) -> str:
    """Clean user text (a prompt) as the training text was, minus the whole-document steps."""
    if config.normalize:
        text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    return text.lower() if config.lowercase else text


def list_sources(paths: Iterable[str | Path]) -> list[Path]:
    """Expand directories into their ``.txt`` files (sorted); check every path exists."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.txt") if p.is_file())
            if not found:
                raise CorpusError(f"{path}: directory holds no .txt files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise CorpusError(f"{path}: no such file or directory")
    if not files:
        raise CorpusError("no input text given")
    return files


def read_file(path: Path, encoding: str = "utf-8") -> str:
    """Decode one file, naming the file and byte offset when it does not decode."""
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise CorpusError(f"unknown encoding {encoding!r}") from None
    data = path.read_bytes()
    # UTF-16 and UTF-32 text is full of NUL bytes; in any other encoding they mean binary.
    if b"\x00" in data[:65536] and not codec.startswith(("utf-16", "utf-32")):
        raise CorpusError(f"{path}: looks like a binary file (NUL bytes), not text")
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"{path}: not valid {encoding} at byte offset {exc.start}; "
            "pass --encoding with the file's real encoding"
        ) from None


def load_text(paths: Sequence[str | Path], config: CorpusConfig = CorpusConfig()) -> str:
    """Read, clean and join the given files or directories into one training text."""
    parts = [clean_text(read_file(p, config.encoding), config) for p in list_sources(paths)]
    text = SEPARATOR.join(p for p in parts if p)
    if not text:
        raise CorpusError("the text is empty after cleaning")
    return text


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

    def encode(self, text: str, unknown: str = "error", replacement: str | None = None) -> np.ndarray:
        """Text to an int64 id array, applying the unknown-character policy."""
        if unknown not in ("error", "drop", "replace"):
            raise ConfigError(f"unknown-character policy must be error, drop or replace, not {unknown!r}")
        missing = self.unknown(text)
        if missing:
            if unknown == "error":
                raise UnknownCharactersError(missing)
            if unknown == "drop":
                text = "".join(c for c in text if c in self.index)
            elif unknown == "replace":
                if replacement is None or replacement not in self.index:
                    raise CorpusError(f"replacement {replacement!r} is not in the vocabulary")
                text = "".join(c if c in self.index else replacement for c in text)
        return np.fromiter((self.index[c] for c in text), dtype=np.int64, count=len(text))

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def to_list(self) -> list[str]:
        return list(self.chars)

    def to_json(self) -> str:
        return json.dumps(self.chars)


def summarize(text: str, vocab: Vocab) -> dict[str, int]:
    """The figures the tutorial prints: characters and vocabulary size."""
    return {"total_characters": len(text), "total_vocab": len(vocab)}
