"""Text in, clean text and a vocabulary out.

Reading: one or more files, or a directory of ``.txt`` files taken in sorted
name order, joined with a blank line (``SEPARATOR``) so one book's last line
does not run into the next one's first.

Cleaning (``charlstm.cleaning``), in this order: drop a byte-order mark, turn
CRLF and CR into LF, Unicode NFC, strip Project Gutenberg's header and footer
when their markers are present, trim blank lines around the body, optionally
lowercase. Files are decoded and cleaned in pieces, so no file is read whole.

Refused, each with a ``CorpusError`` naming the file: a path that is no regular
file (a named pipe, a device such as /dev/zero: never opened, so never waited on);
a file that cannot be read; a NUL byte anywhere (binary; or UTF-16/32 read as
something else, which the message says with the encoding to set) or, in
UTF-16/32, a NUL character; a corpus with no character but whitespace. A file
with no character but whitespace among others with text is only a warning: it is
kept as it is, since blank space between documents is still text, but it is most
likely a mistake.
"""

from __future__ import annotations

import codecs
import itertools
import logging
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import BinaryIO

from charlstm.config.corpus import CorpusConfig
from charlstm.data.cleaning import TextCleaner
from charlstm.errors import CorpusError

log = logging.getLogger(__name__)

SEPARATOR = "\n\n"
# Files are read and cleaned in pieces of this size, never whole; 4 MiB pieces were no faster
# and cost 16 MB more at the peak of preparing a 120 MB file.
CHUNK_BYTES = 1 << 20
SNIFF_BYTES = 65536  # how much of a file's start tells UTF-16/32 text from binary
WIDE = ("utf-16", "utf-32")  # encodings whose text is full of NUL bytes
_BOMS = (  # UTF-32's little-endian mark first: it begins with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32", "le"), (codecs.BOM_UTF32_BE, "utf-32", "be"),
    (codecs.BOM_UTF16_LE, "utf-16", "le"), (codecs.BOM_UTF16_BE, "utf-16", "be"),
)


def default_corpus_path() -> Path:
    """The bundled Alice's Adventures in Wonderland (Project Gutenberg #11)."""
    return Path(str(resources.files("charlstm.data") / "default_corpus" / "wonderland.txt"))


def list_sources(paths: Iterable[str | Path], suffixes: tuple[str, ...] = (".txt",)) -> list[Path]:
    """Expand directories into their files ending in ``suffixes`` (sorted); check every path exists."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in suffixes and p.is_file())
            if not found:
                raise CorpusError(f"{path}: directory holds no {', '.join(suffixes)} files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise CorpusError(f"{path}: {_not_a_file(path)}")
    if not files:
        raise CorpusError("no input text given")
    return files


_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _not_a_file(path: Path) -> str:
    """Why ``path``, neither a regular file nor a folder, cannot be a text.

    A pipe or a device is refused before anything opens it: opening a pipe waits for a writer,
    /dev/zero never ends, and the corpus is read twice, which a stream cannot give.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "no such file or directory"
    except OSError as exc:  # a loop of links, a folder on the way that may not be entered
        return f"cannot read it ({exc.strerror or exc})"
    kind = next((name for test, name in _KINDS if test(mode)), "something else")
    return f"is {kind}, not a regular file; give a text file or a folder of .txt files"


def _sniff_wide(sample: bytes) -> tuple[str, str] | None:
    """``("utf-16" or "utf-32", "le" or "be")`` when ``sample``'s NUL bytes say so, else None.

    A byte-order mark says it outright. Without one, UTF-32 has NUL in the top byte of every
    four (and mostly the next) but rarely in the lowest, and UTF-16 of Latin, Greek or Cyrillic
    text in many bytes on one side of each pair and hardly any on the other; a binary file's
    NULs (a file of zeros too) fall on every side.
    """
    for bom, family, order in _BOMS:
        if sample.startswith(bom):
            return family, order
    n = len(sample) // 4
    if n:
        zeros = [sample[i : 4 * n : 4].count(0) for i in range(4)]  # NUL bytes at each place of four
        for order, low, next_top, top in (("le", 0, 2, 3), ("be", 3, 1, 0)):
            if zeros[top] == n and zeros[next_top] * 10 >= n * 9 and zeros[low] * 10 <= n:
                return "utf-32", order
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    major, order = max((odd, "le"), (even, "be"))
    if major >= max(1, len(sample) // 20) and min(even, odd) * 10 <= major:
        return "utf-16", order
    return None


def _wide_error(path: Path, encoding: str, head: bytes, what: str) -> CorpusError | None:
    """The error for ``what`` went wrong when ``head`` (the file's start) looks like UTF-16/32
    text while ``encoding`` is something else; None when it does not."""
    wide = _sniff_wide(head)
    if wide is None or codecs.lookup(encoding).name.startswith(wide[0]):
        return None
    family, order = wide
    endian = {"le": "little-endian", "be": "big-endian"}[order]
    return CorpusError(f"{path}: looks like {family.upper()} text ({endian}), not {encoding} "
                       f"({what}); set encoding to {family}", hint=f"--encoding {family}")


def _nul_error(path: Path, encoding: str, head: bytes, where: str) -> CorpusError:
    """The error for a NUL in ``path``: binary, unless its start looks like UTF-16/32 text."""
    return (_wide_error(path, encoding, head, where)
            or CorpusError(f"{path}: {where}; it looks like a binary file, not {encoding} text"))


def _decoder(path: Path, encoding: str, codec: str, head: bytes) -> codecs.IncrementalDecoder:
    """An incremental decoder; plain UTF-16/32 without a byte-order mark takes its order from the text.

    (Python's own wants the mark, and an editor's "UTF-16 LE" often writes none.)
    """
    if codec in WIDE and not head.startswith(tuple(bom for bom, _, _ in _BOMS)):
        wide = _sniff_wide(head)
        if wide is None or wide[0] != codec:  # the other wide family's pattern gets that named
            raise _wide_error(path, encoding, head, "no byte-order mark") or CorpusError(
                f"{path}: no {codec.upper()} byte-order mark, and the text does not show its byte "
                "order; set the encoding with the order, or check the encoding",
                hint=f"--encoding {codec}-le or --encoding {codec}-be")
        codec = f"{codec}-{wide[1]}"
    return codecs.getincrementaldecoder(codec)()


def _read(f: BinaryIO, size: int, path: Path) -> bytes:
    try:
        return f.read(size)
    except OSError as exc:  # an I/O error, a folder opened as a file: the system says which
        raise CorpusError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def iter_decoded(
    path: Path, encoding: str = "utf-8", chunk_bytes: int | None = None,
    on_bytes: Callable[[int], object] | None = None,
) -> Iterator[str]:
    """Decode a file piece by piece, naming the file and byte offset when it does not decode.

    Each piece is checked for NUL as it streams, so one anywhere in the file is found.
    """
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise CorpusError(f"unknown encoding {encoding!r}") from None
    if not path.is_file():  # a pipe would block the open below until something writes to it
        raise CorpusError(f"{path}: {_not_a_file(path)}")
    try:
        f = open(path, "rb")  # noqa: SIM115 - the with below closes it; the try guards only the opening
    except OSError as exc:  # no permission, most often
        raise CorpusError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    with f:
        yield from _decode_stream(path, f, encoding, codec, chunk_bytes, on_bytes)


def _decode_stream(
    path: Path, f: BinaryIO, encoding: str, codec: str, chunk_bytes: int,
    on_bytes: Callable[[int], object] | None,
) -> Iterator[str]:
    """``iter_decoded``'s loop over an open file: NUL checks, decoding, errors with offsets."""
    wide = codec.startswith(WIDE)
    data = _read(f, chunk_bytes, path)
    head = data[:SNIFF_BYTES]
    decoder = _decoder(path, encoding, codec, head) if data else None
    offset = chars = 0
    while data:
        if on_bytes is not None:
            on_bytes(len(data))
        nul = -1 if wide else data.find(0)  # memchr: free beside the decoding
        if nul >= 0:
            raise _nul_error(path, encoding, head, f"NUL byte at byte offset {offset + nul}")
        try:
            text = decoder.decode(data)
        except UnicodeDecodeError as exc:
            what = f"not valid {encoding} at byte offset {offset + exc.start}"
            raise (_wide_error(path, encoding, head, what)
                   or CorpusError(f"{path}: {what}; pass --encoding with the file's real encoding")) from None
        except ValueError as exc:  # codecs such as punycode and idna fail with no offset to give
            raise _undecodable(path, encoding, offset, exc) from None
        nul = text.find("\x00") if wide else -1
        if nul >= 0:
            raise _nul_error(path, encoding, head, f"NUL character at character offset {chars + nul}")
        yield text
        offset, chars = offset + len(data), chars + len(text)
        data = _read(f, chunk_bytes, path)
    if decoder is None:
        return
    try:
        yield decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path}: not valid {encoding}: truncated at byte offset "
                          f"{offset + exc.start}") from None
    except ValueError as exc:
        raise _undecodable(path, encoding, offset, exc) from None


def _undecodable(path: Path, encoding: str, offset: int, exc: ValueError) -> CorpusError:
    """The error for a decoder that failed without saying where (offset: the piece's start)."""
    return CorpusError(f"{path}: not valid {encoding} (from byte offset {offset}: {exc}); pass "
                       "--encoding with the file's real encoding")


def iter_clean(
    paths: Sequence[str | Path], config: CorpusConfig | None = None,
    on_bytes: Callable[[int], object] | None = None, *, warn: bool = True,
) -> Iterator[str]:
    """Clean text from files or folders, piece by piece, documents joined by ``SEPARATOR``.

    ``on_bytes`` is called with the size of each piece of a file read, for progress bars.
    A corpus of only whitespace raises ``CorpusError`` once read; a file of only whitespace
    among others is logged as a warning (unless ``warn`` is off: a second pass over the same
    files).
    """
    config = config or CorpusConfig()
    any_text = any_content = False
    blank: list[Path] = []
    for path in list_sources(paths):
        cleaner = TextCleaner.for_corpus(config)
        doc_started = doc_content = False
        # chain, not (*pieces, None): unpacking would read the whole file before the first piece.
        for piece in itertools.chain(iter_decoded(path, config.encoding, on_bytes=on_bytes), [None]):
            text = cleaner.finish() if piece is None else cleaner.feed(piece)
            if text:
                if any_text and not doc_started:
                    yield SEPARATOR
                doc_started = any_text = True
                # isspace stops at the first other character, and the check stops once one is found.
                doc_content = doc_content or not text.isspace()
                yield text
        if not doc_content:
            blank.append(path)
        any_content = any_content or doc_content
    if any_text and not any_content:
        names = str(blank[0]) if len(blank) == 1 else f"all {len(blank)} files ({blank[0]}, ...)"
        raise CorpusError(f"{names}: only whitespace (spaces, tabs, newlines) after cleaning; "
                          "nothing for a model to learn")
    for path in blank if warn and any_content else ():
        log.warning("%s: nothing but whitespace after cleaning; it adds no text to the corpus", path)


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

