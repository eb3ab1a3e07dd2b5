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
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import BinaryIO

from charlstm.config.corpus import CorpusConfig
from charlstm.data.cleaning import TextCleaner
from charlstm.errors import CorpusError

SEPARATOR = "\n\n"
CHUNK_BYTES = 4 << 20  # files are read and cleaned in pieces of this size, never whole


def default_corpus_path() -> Path:
    """The bundled Alice's Adventures in Wonderland (Project Gutenberg #11)."""
    return Path(str(resources.files("charlstm.data") / "default_corpus" / "wonderland.txt"))


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
    paths: Sequence[str | Path], config: CorpusConfig | None = None,
    on_bytes: Callable[[int], object] | None = None,
) -> Iterator[str]:
    """Clean text from files or folders, piece by piece, documents joined by ``SEPARATOR``.

    ``on_bytes`` is called with the size of each piece of a file read, for progress bars.
    """
    config = config or CorpusConfig()
    any_text = False
    for path in list_sources(paths):
        cleaner = TextCleaner.for_corpus(config)
        doc_started = False
        # chain, not (*pieces, None): unpacking would read the whole file before the first piece.
        for piece in itertools.chain(iter_decoded(path, config.encoding, on_bytes=on_bytes), [None]):
            text = cleaner.finish() if piece is None else cleaner.feed(piece)
            if text:
                if any_text and not doc_started:
                    yield SEPARATOR
                doc_started = any_text = True
                yield text


def read_prompt(source: str | Path | BinaryIO) -> str:
    """A prompt's text from a file or an open binary stream (standard input), strictly UTF-8.

    A leading byte-order mark is dropped (editors on Windows write one); the rest of the
    cleaning is the prompt's own (``clean_prompt``), applied by the generators.
    """
    name = str(source) if isinstance(source, str | Path) else getattr(source, "name", "<stdin>")
    try:
        data = Path(source).read_bytes() if isinstance(source, str | Path) else source.read()
    except FileNotFoundError:
        raise CorpusError(f"prompt file {name}: no such file") from None
    except OSError as exc:  # a folder, no permission, an I/O error: the system says which
        raise CorpusError(f"prompt file {name}: cannot read it ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")  # not utf-8-sig: its offsets skip the BOM
    except UnicodeDecodeError as exc:
        raise CorpusError(f"prompt file {name}: not valid UTF-8 at byte offset {exc.start}",
                          hint="convert it to UTF-8 first, e.g. with iconv") from None
    if not text:
        raise CorpusError(f"prompt file {name} is empty")
    return text


def load_text(paths: Sequence[str | Path], config: CorpusConfig | None = None) -> str:
    """Read, clean and join the given files or directories into one training text."""
    text = "".join(iter_clean(paths, config))
    if not text:
        raise CorpusError("the text is empty after cleaning")
    return text

