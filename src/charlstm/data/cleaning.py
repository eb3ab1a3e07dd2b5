"""Cleaning text as it streams: the one implementation behind every way text comes in.

Steps, in order (the first three only when ``normalize`` is on): drop a
byte-order mark, turn CRLF and CR into LF, Unicode NFC; strip a Project
Gutenberg header (through a ``*** START OF THIS/THE PROJECT GUTENBERG EBOOK``
line found within the first ``HEADER_WINDOW`` characters) and footer (from the
first ``*** END OF ...`` or older ``End of Project Gutenberg's ...`` line on);
trim blank lines around the body (``normalize``); lowercase (``lowercase``).

``TextCleaner`` takes a document in chunks of any size and gives the same text
as cleaning it whole: it holds back only what the next chunk could change (a
trailing CR, a character that a combining mark may follow, a partial line that
may be a footer marker, trailing newlines, and the header window). What it holds
is bounded whatever the line lengths: a partial line longer than ``LINE_HOLD``
is passed on, since a marker line is judged by its first characters.
"""

from __future__ import annotations

import re
import unicodedata

from charlstm.config.corpus import CorpusConfig

HEADER_WINDOW = 1 << 20  # Gutenberg headers are a few KB; a START line further in is body text
# A footer marker shows what it is in its first ~40 characters; a partial line this long that has
# not matched by then is no marker, and goes on without waiting for its end (a 100 MB line).
LINE_HOLD = 1 << 16

_START = re.compile(r"^\*{3}\s*START OF (?:THIS|THE) PROJECT GUTENBERG EBOOK.*$", re.M | re.I)
_END = re.compile(
    r"^(?:\*{3}\s*END OF (?:THIS|THE) PROJECT GUTENBERG EBOOK.*"
    r"|End of (?:the )?Project Gutenberg'?s? .*)$",
    re.M | re.I,
)


def normalize_newlines(text: str) -> str:
    """CRLF and CR become LF (a CR at the end of a piece may be half a CRLF: hold it back first)."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def _may_hold_marker(text: str) -> bool:
    """A cheap test before the footer search: plain substring checks run at memory speed."""
    return "utenberg" in text or "UTENBERG" in text


class TextCleaner:
    """Incremental cleaner for one document: ``feed`` chunks, then ``finish``."""

    @classmethod
    def for_corpus(cls, config: CorpusConfig) -> TextCleaner:
        return cls(normalize=config.normalize, strip_gutenberg=config.strip_gutenberg,
                   lowercase=config.lowercase)

    def __init__(self, *, normalize: bool = True, strip_gutenberg: bool = True, lowercase: bool = False):
        self.normalize, self.strip_gutenberg, self.lowercase = normalize, strip_gutenberg, lowercase
        self._first = True
        self._cr = ""  # a CR at a chunk's end may be the first half of CRLF
        self._nfc = ""  # the tail a combining mark in the next chunk could still change
        self._line = ""  # a partial last line: it may turn out to be a footer marker
        self._mid_line = False  # the text passed on so far ends inside a line: no marker starts next
        self._head: list[str] = []  # text before the header decision
        self._head_len = 0
        self._in_body = not strip_gutenberg
        self._ended = False
        self._emitted_any = False
        self._newlines = 0  # trailing newlines held back: dropped if the document ends here

    def feed(self, chunk: str) -> str:
        """Clean ``chunk``; returns the text that is final so far (possibly empty)."""
        return self._process(chunk, final=False)

    def finish(self) -> str:
        """Flush what was held back; the cleaner is done afterwards."""
        return self._process("", final=True)

    def _process(self, chunk: str, final: bool) -> str:
        if self._ended:
            return ""
        if self.normalize:
            chunk = self._normalize(chunk, final)
        chunk = self._complete_lines(chunk, final)
        if not self._in_body:
            chunk = self._skip_header(chunk, final)
        if self.strip_gutenberg and chunk:
            if _may_hold_marker(chunk):
                # From 1 when the chunk continues a line: with re.M, '^' then matches only after a newline.
                end = _END.search(chunk, 1 if self._mid_line else 0)
                if end:
                    chunk, self._ended = chunk[: end.start()], True
                    final = True
            self._mid_line = not chunk.endswith("\n")
        return self._emit(chunk, final)

    def _complete_lines(self, chunk: str, final: bool) -> str:
        """What can go on to the marker searches: whole lines, and long or continued partial lines.

        Markers are whole lines, so a partial last line waits for its end, unless it is longer
        than ``LINE_HOLD`` (its start already shows it is no marker) or continues a line that
        went on before; in the header window it waits until the window is full, for the same
        START decision as on the whole text.
        """
        text = self._line + chunk
        if final or not self.strip_gutenberg:  # without markers to look for, nothing need wait
            self._line = ""
            return text
        cut = text.rfind("\n") + 1
        if self._in_body:
            release = (self._mid_line and cut == 0) or len(text) - cut >= LINE_HOLD
        else:
            release = len(text) - cut >= LINE_HOLD and self._head_len + len(text) >= HEADER_WINDOW
        if release:
            cut = len(text)
        self._line = text[cut:]
        return text[:cut]

    def _normalize(self, chunk: str, final: bool) -> str:
        if self._first:
            chunk, self._first = chunk.removeprefix("\ufeff"), False
        chunk = self._cr + chunk
        self._cr = ""
        if chunk.endswith("\r") and not final:
            chunk, self._cr = chunk[:-1], "\r"
        chunk = normalize_newlines(chunk)
        chunk = self._nfc + chunk
        cut = len(chunk)
        if not final:
            # Hold back from the last starter: marks arriving next may compose with it.
            cut -= 1
            while cut > 0 and unicodedata.combining(chunk[cut]):
                cut -= 1
            cut = max(cut, 0)
        chunk, self._nfc = chunk[:cut], chunk[cut:]
        return chunk if chunk.isascii() else unicodedata.normalize("NFC", chunk)

    def _skip_header(self, chunk: str, final: bool) -> str:
        self._head.append(chunk)
        self._head_len += len(chunk)
        if not (final or self._head_len >= HEADER_WINDOW or _START.search(chunk)):
            return ""
        head, self._head = "".join(self._head), []
        self._in_body = True
        start = _START.search(head, 0, HEADER_WINDOW)
        return head[start.end() :] if start else head

    def _emit(self, text: str, final: bool) -> str:
        if self.normalize:
            if not self._emitted_any:
                text = text.lstrip("\n")
            if not text:
                return ""
            body = text.rstrip("\n")
            held = len(text) - len(body)
            if body:
                text = "\n" * self._newlines + body
                self._newlines = held
            else:
                self._newlines += held
                text = ""
            if final:
                self._newlines = 0
        if text:
            self._emitted_any = True
        return text.lower() if self.lowercase else text


def clean_prompt(text: str, config: CorpusConfig) -> str:
    """Clean user text (a prompt) as the training text was, minus the whole-document steps."""
    if config.normalize:
        text = unicodedata.normalize("NFC", normalize_newlines(text))
    return text.lower() if config.lowercase else text
