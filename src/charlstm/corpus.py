"""Text in, clean text and a vocabulary out.

Reading: one or more files, or a directory of ``.txt`` files taken in sorted
name order, joined with a blank line (``SEPARATOR``) so one book's last line
does not run into the next one's first.

Cleaning (``charlstm.cleaning``), in this order: drop a byte-order mark, turn
CRLF and CR into LF, Unicode NFC, strip Project Gutenberg's header and footer
when their markers are present, trim blank lines around the body, optionally
lowercase. Files are decoded and cleaned in pieces, so no file is read whole.
"""

from __future__ import annotations

import codecs
import itertools
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from charlstm.cleaning import TextCleaner, clean_document
from charlstm.errors import ConfigError, CorpusError, UnknownCharactersError

SEPARATOR = "\n\n"
CHUNK_BYTES = 4 << 20  # files are read and cleaned in pieces of this size, never whole


@dataclass(frozen=True)
class CorpusConfig:
    """How raw text becomes training text."""

    lowercase: bool = False  # the tutorial lowercases to shrink the vocabulary
    strip_gutenberg: bool = True  # no-op on texts without the markers
    encoding: str = "utf-8"
    # BOM, newlines, NFC, blank lines around the body. Off only to rebuild a text exactly
    # as another tool read it (the Keras tutorial's Python 2 read bytes, '\r' and BOM included).
    normalize: bool = True

    def cleaner(self) -> TextCleaner:
        return TextCleaner(normalize=self.normalize, strip_gutenberg=self.strip_gutenberg,
                           lowercase=self.lowercase)


def default_corpus_path() -> Path:
    """The bundled Alice's Adventures in Wonderland (Project Gutenberg #11)."""
    return Path(str(resources.files("charlstm") / "default_corpus" / "wonderland.txt"))


def strip_gutenberg(text: str) -> str:
    """Remove a Project Gutenberg header and footer; text without markers is unchanged."""
    return clean_document(text, normalize=False)


def clean_text(text: str, config: CorpusConfig = CorpusConfig()) -> str:
    """Apply the cleaning steps of ``charlstm.cleaning`` to one whole document."""
    cleaner = config.cleaner()
    return cleaner.feed(text) + cleaner.finish()


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


def iter_decoded(
    path: Path, encoding: str = "utf-8", chunk_bytes: int | None = None,
    on_bytes: Callable[[int], object] | None = None,
) -> Iterator[str]:
    """Decode a file piece by piece, naming the file and byte offset when it does not decode."""
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise CorpusError(f"unknown encoding {encoding!r}") from None
    decoder = codecs.getincrementaldecoder(codec)()
    offset = 0
    with open(path, "rb") as f:
        while data := f.read(chunk_bytes):
            if on_bytes is not None:
                on_bytes(len(data))
            # UTF-16 and UTF-32 text is full of NUL bytes; in any other encoding they mean binary.
            if offset == 0 and b"\x00" in data[:65536] and not codec.startswith(("utf-16", "utf-32")):
                raise CorpusError(f"{path}: looks like a binary file (NUL bytes), not text")
            try:
                yield decoder.decode(data)
            except UnicodeDecodeError as exc:
                raise CorpusError(
                    f"{path}: not valid {encoding} at byte offset {offset + exc.start}; "
                    "pass --encoding with the file's real encoding"
                ) from None
            offset += len(data)
        try:
            yield decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise CorpusError(f"{path}: not valid {encoding}: truncated at byte offset "
                              f"{offset + exc.start}") from None


def iter_clean(
    paths: Sequence[str | Path], config: CorpusConfig = CorpusConfig(),
    on_bytes: Callable[[int], object] | None = None,
) -> Iterator[str]:
    """Clean text from files or folders, piece by piece, documents joined by ``SEPARATOR``.

    ``on_bytes`` is called with the size of each piece of a file read, for progress bars.
    """
    any_text = False
    for path in list_sources(paths):
        cleaner = config.cleaner()
        doc_started = False
        # chain, not (*pieces, None): unpacking would read the whole file before the first piece.
        for piece in itertools.chain(iter_decoded(path, config.encoding, on_bytes=on_bytes), [None]):
            text = cleaner.finish() if piece is None else cleaner.feed(piece)
            if text:
                if any_text and not doc_started:
                    yield SEPARATOR
                doc_started = any_text = True
                yield text


def load_text(paths: Sequence[str | Path], config: CorpusConfig = CorpusConfig()) -> str:
    """Read, clean and join the given files or directories into one training text."""
    text = "".join(iter_clean(paths, config))
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
        if isinstance(ids, np.ndarray):
            # A '<U1' array's bytes are UTF-32: one C-level decode, not a Python loop over MBs of ids.
            return np.asarray(self.chars, dtype="<U1")[ids].tobytes().decode("utf-32-le")
        return "".join(self.chars[int(i)] for i in ids)

    def to_list(self) -> list[str]:
        return list(self.chars)
