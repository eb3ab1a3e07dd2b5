"""How raw text becomes training text: the corpus settings."""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field

from charlstm.config.choices import RecordFormat, coerce_choices
from charlstm.errors import ConfigError


@dataclass(frozen=True)
class CorpusConfig:
    """How raw text becomes training text."""

    lowercase: bool = field(default=False, metadata={
        "help": "Lowercase the text (the tutorial does, to shrink the vocabulary)."})
    strip_gutenberg: bool = field(default=True, metadata={
        "help": "Cut Project Gutenberg's header and licence (a text without their markers is kept "
                "whole)."})
    encoding: str = field(default="utf-8", metadata={"help": "The text files' encoding."})
    # Off only to rebuild a text exactly as another tool read it (the Keras tutorial's Python 2 read
    # bytes, '\r' and BOM included).
    normalize: bool = field(default=True, metadata={
        "help": "Drop a BOM, turn CRLF and CR into LF, NFC-normalise, trim blank lines around the "
                "body; off only to read a text exactly as another tool did."})

    records: RecordFormat | None = field(default=None, metadata={
        "help": "Read the files as a list of items (names, titles, ...), not one running text: lines, "
                "paragraphs, csv, tsv or jsonl."})
    text_column: str | None = field(default=None, metadata={
        "help": "csv/tsv: the column holding each item (unset: the first); jsonl: its key (unset: "
                "text)."})
    label_column: str | None = field(default=None, metadata={
        "help": "csv/tsv/jsonl: the column holding each item's label, to generate items of a label."})

    def __post_init__(self) -> None:
        coerce_choices(self)
        check_text_encoding(self.encoding)
        columns = self.records in (RecordFormat.CSV, RecordFormat.TSV, RecordFormat.JSONL)
        for name in ("text_column", "label_column"):
            if getattr(self, name) is not None and not columns:
                raise ConfigError(f"{name} needs records csv, tsv or jsonl (a format with columns)",
                                  hint="--records csv")
            if getattr(self, name) == "":
                raise ConfigError(f"{name} must name a column, not be empty")
        if self.label_column is not None and self.label_column == self.text_column:
            raise ConfigError("label_column and text_column name the same column")


def check_text_encoding(encoding: str) -> None:
    """Refuse a codec that cannot turn a file's bytes into text.

    Python's codec registry also holds bytes-to-bytes codecs (base64, zlib, bz2, hex, uu) and
    str-to-str ones (rot13), which it marks as not text encodings, and ``undefined``, which
    refuses to decode anything: each would fail with a traceback in the middle of reading.
    """
    try:
        info = codecs.lookup(encoding)
    except (LookupError, TypeError, ValueError):  # ValueError: a name with a NUL in it
        raise ConfigError(f"unknown encoding {encoding!r}; use a text encoding such as utf-8 or "
                          "latin-1") from None
    if not getattr(info, "_is_text_encoding", True):
        raise ConfigError(f"encoding {encoding!r} is not a text encoding (it turns bytes into bytes "
                          "or text into text); use a text encoding such as utf-8 or latin-1")
    try:
        codecs.getincrementaldecoder(encoding)().decode(b"", final=True)
    except (UnicodeError, LookupError, TypeError, ValueError):
        raise ConfigError(f"encoding {encoding!r} cannot decode text; use a text encoding such as "
                          "utf-8 or latin-1") from None
