"""A file's lines, decoded piece by piece: what the readers of lists of items parse.

Lines end where ``open(newline="")`` ends them (LF, CRLF, CR), so the csv module gets the
lines its docs ask for; no file is read whole, and a line is held whole only up to
``MAX_LINE_CHARS``. Decoding errors name the line (and byte offset), with ``data.sources``'s
checks for pipes, devices, NUL bytes and UTF-16/32.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from pathlib import Path

from charlstm.config.corpus import CorpusConfig
from charlstm.data import sources
from charlstm.errors import CorpusError

MAX_LINE_CHARS = 1 << 24  # past this, a "line" is a binary file or a one-line dump, not a list
_LINE_END = re.compile(r"\r\n|\r|\n")


class DecodedLines:
    """A file's lines with their ends, decoded piece by piece; ``number``: the last line's, from 1."""

    def __init__(self, path: Path, corpus: CorpusConfig, *, drop_bom: bool):
        self.path, self.encoding, self.number = path, corpus.encoding, 0
        self._drop_bom = drop_bom or corpus.normalize
        self._rest = ""  # the partial line after the last line break

    def __iter__(self) -> Iterator[str]:
        for piece in self._decoded():
            if self._drop_bom and piece:
                piece, self._drop_bom = piece.removeprefix("\ufeff"), False
            self._rest += piece
            yield from self._split(final=False)
        yield from self._split(final=True)

    def _split(self, final: bool) -> Iterator[str]:
        text, start = self._rest, 0
        for end in _LINE_END.finditer(text):
            if end.group() == "\r" and end.end() == len(text) and not final:
                break  # maybe half a CRLF: the next piece says
            self.number += 1
            yield text[start : end.end()]
            start = end.end()
        self._rest = text[start:]
        if final and self._rest:
            self.number += 1
            yield self._rest
        elif len(self._rest) > MAX_LINE_CHARS:
            raise CorpusError(f"{self.path}:line {self.number + 1}: a line of over {MAX_LINE_CHARS:,} "
                              "characters; is this a list of items (or a binary file)?")

    def _line_of(self, state: tuple[bytes, int], data: bytes, decoder: object) -> int:
        """The line on which ``data``, fed to a decoder in ``state`` after the text so far, ends."""
        try:
            probe = type(decoder)()
            probe.setstate(state)
            text = probe.decode(data)
        except (TypeError, ValueError):  # a codec that cannot say: the partial line's number it is
            text = ""
        seen = self._rest + text
        return self.number + seen.count("\n") + seen.count("\r") - seen.count("\r\n") + 1

    def _decoded(self) -> Iterator[str]:
        """The file's text in pieces, as ``sources.iter_decoded``, with line numbers in errors."""
        path, encoding = self.path, self.encoding
        if not path.is_file():  # a pipe would block the open below until something writes to it
            raise CorpusError(f"{path}: {sources._not_a_file(path)}")
        try:
            f = open(path, "rb")  # noqa: SIM115 - the with below closes it; the try guards the opening
        except OSError as exc:
            raise CorpusError(f"{path}: cannot read it ({exc.strerror or exc})") from None
        with f:
            data = sources._read(f, sources.CHUNK_BYTES, path)
            head, offset = data[: sources.SNIFF_BYTES], 0
            codec = codecs.lookup(encoding).name  # CorpusConfig has checked it exists
            decoder = sources._decoder(path, encoding, codec, head) if data else None
            while data:
                state = decoder.getstate()
                nul = -1 if codec.startswith(sources.WIDE) else data.find(0)
                if nul >= 0:
                    line = self._line_of(state, data[:nul], decoder)
                    raise sources._nul_error(path, encoding, head,
                                             f"NUL byte on line {line} (byte offset {offset + nul})")
                try:
                    text = decoder.decode(data)
                except UnicodeDecodeError as exc:
                    # exc.object is the decoder's held bytes and then data: decode its good start.
                    line = self._line_of((b"", state[1]), exc.object[: exc.start], decoder)
                    at = offset + exc.start - len(state[0])
                    raise CorpusError(f"{path}:line {line}: not valid {encoding} at byte offset {at}; "
                                      "set encoding to the file's real encoding",
                                      hint="--encoding cp1252 (or latin-1, utf-16, ...)") from None
                except ValueError as exc:  # punycode, idna: no offset to give
                    raise sources._undecodable(path, encoding, offset, exc) from None
                yield text
                offset += len(data)
                data = sources._read(f, sources.CHUNK_BYTES, path)
            if decoder is not None:
                try:
                    yield decoder.decode(b"", final=True)
                except (UnicodeDecodeError, ValueError):
                    raise CorpusError(f"{path}:line {self._line_of((b'', 0), b'', decoder)}: not "
                                      f"valid {encoding}: the file ends inside a character") from None
