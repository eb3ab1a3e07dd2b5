"""Lists of things: the items of a file of lines, paragraphs, CSV/TSV rows or JSON lines.

``iter_records`` streams one ``Record`` per item in file order, duplicates included (they are
the list's weights). Files are decoded in pieces and split into lines where ``open(newline="")``
splits them (LF, CRLF, CR), so no file is read whole; a line, or a paragraph, is held whole
while it is parsed, up to ``MAX_LINE_CHARS``.

- lines: each line that is not only whitespace is an item.
- paragraphs: items are separated by whitespace-only lines; an item keeps its inner line breaks.
- csv / tsv: the csv module's default dialect (tsv: tab-separated); the first non-empty row is
  the header; the item is in ``text_column`` (unset: the first column), its label in
  ``label_column``. Empty rows are skipped; a row too short to reach a column has "" there.
- jsonl: one JSON object per non-blank line; the item under ``text_column`` (unset: "text").
  A label may be a string or an integer (class ids are common), written as its digits.

Cleaning of each item and label: with ``normalize``, CRLF and CR become LF and Unicode NFC;
with ``lowercase``, the item (never its label) is lowercased; then surrounding whitespace goes.
A byte-order mark at a file's start is dropped with ``normalize``, and always for csv/tsv/jsonl,
where it would hide the first column's name or break the JSON. No Gutenberg stripping.

Refused with a ``CorpusError`` naming the file and line (or row): what ``data.sources``
refuses (a missing file, a pipe or device, a NUL byte), text that does not decode, a missing
column, a csv/tsv/jsonl row with no text or an empty label, bad JSON or no object, a value of
the wrong type, an item over ``MAX_ITEM_CHARS``, a reserved character, no item in any file.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from charlstm.config.choices import RecordFormat
from charlstm.config.corpus import CorpusConfig
from charlstm.data import sources
from charlstm.data.cleaning import normalize_newlines
from charlstm.data.lines import MAX_LINE_CHARS, DecodedLines
from charlstm.errors import ConfigError, CorpusError

# An item is one training example, padded to the longest item of its batch: one very long item
# (a paragraph read where lines were meant) would make every batch holding it that long.
MAX_ITEM_CHARS = 10_000
START, END = "\x02", "\x03"  # the item start / end symbols the preparation adds
LABEL_BASE = 0xE000  # label k is the symbol chr(LABEL_BASE + k): Unicode's Private Use Area
RESERVED = re.compile("[\x00-\x03\ue000-\uf8ff]")  # START, END, NUL, \x01 and the label symbols
SUFFIXES = (".txt", ".csv", ".tsv", ".jsonl")  # what a folder contributes


@dataclass(frozen=True)
class Record:
    """One item of a list, cleaned and checked."""

    text: str  # the item, cleaned, non-empty
    label: str | None  # its label (label_column set), else None
    where: str  # "path:line N" or, for csv/tsv, "path:row N" (the header is row 1); for messages


def iter_records(paths: Sequence[str | Path], corpus: CorpusConfig) -> Iterator[Record]:
    """Every item of the files (folders: their files, sorted), in file order, streamed."""
    if corpus.records is None:
        raise ConfigError("reading items needs records set: lines, paragraphs, csv, tsv or jsonl")
    files = sources.list_sources(paths, SUFFIXES)
    read = _READERS[corpus.records]
    found = False
    for path in files:
        for record in read(path, corpus):
            found = True
            yield record
    if not found:
        names = str(files[0]) if len(files) == 1 else f"any of the {len(files)} files ({files[0]}, ...)"
        raise CorpusError(f"no items in {names}: records {corpus.records} found only blank lines "
                          "(or only a header); check records is set to the files' format")


def clean_item(text: str, corpus: CorpusConfig, *, lowercase: bool) -> str:
    """An item's (or, with lowercase off, a label's) cleaning: newlines and NFC, case, trimming."""
    if corpus.normalize:
        text = normalize_newlines(text)
        text = text if text.isascii() else unicodedata.normalize("NFC", text)
    return (text.lower() if lowercase else text).strip()


def _record(where: str, text: str, label: str | None) -> Record:
    """Check a cleaned item and label against the limits and the reserved characters."""
    if len(text) > MAX_ITEM_CHARS:
        raise CorpusError(f"{where}: an item of {len(text):,} characters, over the limit of "
                          f"{MAX_ITEM_CHARS:,}; is records set to the file's format?")
    for what, value in (("item", text), ("label", label)):
        bad = RESERVED.search(value) if value is not None else None
        if bad:
            raise CorpusError(f"{where}: the {what} holds U+{ord(bad.group()):04X}, a character "
                              "reserved for item starts, ends and labels (U+0000-U+0003, "
                              "U+E000-U+F8FF); remove it")
    return Record(text, label, where)


def _read_lines(path: Path, corpus: CorpusConfig) -> Iterator[Record]:
    lines = DecodedLines(path, corpus, drop_bom=False)
    for line in lines:
        text = clean_item(line, corpus, lowercase=corpus.lowercase)
        if text:
            yield _record(f"{path}:line {lines.number}", text, None)


def _read_paragraphs(path: Path, corpus: CorpusConfig) -> Iterator[Record]:
    lines = DecodedLines(path, corpus, drop_bom=False)
    block: list[str] = []
    first = size = 0
    for line in itertools.chain(lines, [""]):  # a blank line at the end ends the last paragraph
        if line.strip():
            first = first if block else lines.number
            block.append(line)
            size += len(line)
            if size > MAX_LINE_CHARS:
                raise CorpusError(f"{path}:line {first}: a paragraph of over {MAX_LINE_CHARS:,} "
                                  "characters; are items separated by blank lines?")
        elif block:
            text = clean_item("".join(block), corpus, lowercase=corpus.lowercase)
            block, size = [], 0
            yield _record(f"{path}:line {first}", text, None)  # not empty: a line of it was not


def _read_table(path: Path, corpus: CorpusConfig) -> Iterator[Record]:
    """csv / tsv: rows numbered from the header's 1; empty lines (csv gives []) are no rows."""
    lines = DecodedLines(path, corpus, drop_bom=True)
    reader = csv.reader(lines, delimiter="\t" if corpus.records == RecordFormat.TSV else ",")
    rows = (row for row in reader if row)
    try:
        header = next(rows, None)
        if header is None:
            return
        text_at = _column(path, header, corpus.text_column, "text_column")
        label_at = _column(path, header, corpus.label_column, "label_column")
        names = (f"column {header[text_at]!r}", f"column {corpus.label_column!r}")
        for number, row in enumerate(rows, start=2):
            text, label = (row[at] if at is not None and at < len(row) else "" for at in (text_at, label_at))
            yield _item(f"{path}:row {number}", text, None if label_at is None else label, corpus, names)
    except csv.Error as exc:  # a field over the csv module's size limit, most likely
        raise CorpusError(f"{path}:line {lines.number}: not valid {corpus.records} ({exc})") from None


def _column(path: Path, header: list[str], name: str | None, setting: str) -> int | None:
    """Where column ``name`` is (the first of that name); unset: the text is the first column."""
    if name is None:
        return 0 if setting == "text_column" else None
    if name in header:
        return header.index(name)
    raise CorpusError(f"{path}:row 1: no column {name!r} in the header; its columns: "
                      f"{', '.join(repr(c) for c in header)}; set {setting} to one of them")


def _item(where: str, text: str, label: str | None, corpus: CorpusConfig,
          names: tuple[str, str]) -> Record:
    """A csv/tsv/jsonl item: cleaned, and refused when it has no text or an empty label."""
    text = clean_item(text, corpus, lowercase=corpus.lowercase)
    if not text:
        raise CorpusError(f"{where}: no text in {names[0]}; remove the row or fill it in")
    if label is not None:
        label = clean_item(label, corpus, lowercase=False)
        if not label:
            raise CorpusError(f"{where}: empty label in {names[1]}; with label_column set every "
                              "item needs a label")
    return _record(where, text, label)


_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "true/false", type(None): "null"}


def _read_jsonl(path: Path, corpus: CorpusConfig) -> Iterator[Record]:
    lines = DecodedLines(path, corpus, drop_bom=True)
    key, label_key = corpus.text_column or "text", corpus.label_column
    names = (f"key {key!r}", f"key {label_key!r}")
    for line in lines:
        if not line.strip():
            continue
        where = f"{path}:line {lines.number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        except RecursionError:
            raise CorpusError(f"{where}: JSON nested too deeply to read") from None
        if not isinstance(obj, dict):
            raise CorpusError(f"{where}: {_JSON_TYPES[type(obj)]}, not a JSON object; each line "
                              f"must be one object such as {{\"{key}\": ...}}")
        text = _json_value(where, obj, key, "text_column", numbers=False)
        label = _json_value(where, obj, label_key, "label_column", numbers=True) if label_key else None
        yield _item(where, text, label, corpus, names)


def _json_value(where: str, obj: dict, key: str, setting: str, *, numbers: bool) -> str:
    """``obj[key]`` as a string; ``numbers``: an integer (a class id) becomes its digits."""
    if key not in obj:
        keys = [repr(k) for k in obj]
        shown = ", ".join(keys[:20]) + (", ..." if len(keys) > 20 else "") if keys else "none"
        raise CorpusError(f"{where}: no key {key!r}; the object's keys: {shown}; set {setting} to "
                          "the key holding it")
    value = obj[key]
    if isinstance(value, str):
        return value
    if numbers and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    allowed = "a string or an integer" if numbers else "a string"
    raise CorpusError(f"{where}: {key!r} is {_JSON_TYPES[type(value)]}, not {allowed}")


_READERS = {
    RecordFormat.LINES: _read_lines, RecordFormat.PARAGRAPHS: _read_paragraphs,
    RecordFormat.CSV: _read_table, RecordFormat.TSV: _read_table, RecordFormat.JSONL: _read_jsonl,
}
