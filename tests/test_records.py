"""data/records.py: items of lines, paragraphs, csv, tsv and jsonl files; cleaning; errors; streaming."""

from __future__ import annotations

import builtins
import csv
import itertools
import json
import os
from pathlib import Path

import pytest

from charlstm.config.corpus import CorpusConfig
from charlstm.data import lines as lines_module
from charlstm.data import records as records_module
from charlstm.data import sources
from charlstm.data.records import END, MAX_ITEM_CHARS, START, Record, iter_records
from charlstm.errors import ConfigError, CorpusError


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def read(tmp_path: Path, name: str, content: str | bytes, records: str, **settings) -> list[Record]:
    path = _write(tmp_path, name, content)
    return list(iter_records([path], CorpusConfig(records=records, **settings)))


def texts(items: list[Record]) -> list[str]:
    return [r.text for r in items]


def error(tmp_path: Path, name: str, content: str | bytes, records: str, **settings) -> str:
    with pytest.raises(CorpusError) as caught:
        read(tmp_path, name, content, records, **settings)
    return str(caught.value)


# --- lines and paragraphs ----------------------------------------------------------------------

def test_lines_trim_skip_blanks_and_keep_duplicates(tmp_path):
    items = read(tmp_path, "dinos.txt", "aardonyx\n  abelisaurus \t\n\n   \nabrictosaurus\naardonyx\n",
                 "lines")
    assert texts(items) == ["aardonyx", "abelisaurus", "abrictosaurus", "aardonyx"]
    assert [r.where for r in items] == [f"{tmp_path / 'dinos.txt'}:line {n}" for n in (1, 2, 5, 6)]
    assert {r.label for r in items} == {None}


def test_lines_end_with_crlf_cr_or_nothing_and_a_bom_goes(tmp_path):
    items = read(tmp_path, "a.txt", "\ufeffone\r\ntwo\rthree\nfour", "lines")
    assert texts(items) == ["one", "two", "three", "four"]
    assert [r.where.rsplit(" ", 1)[1] for r in items] == ["1", "2", "3", "4"]
    assert texts(read(tmp_path, "b.txt", "\ufeffone\n", "lines", normalize=False)) == ["\ufeffone"]


def test_paragraphs_keep_inner_newlines(tmp_path):
    content = "\n\nRoses are red,\r\n  violets blue.\n\n\n \t\nA joke\nin two lines\n\n\nlast  \n"
    items = read(tmp_path, "poems.txt", content, "paragraphs")
    assert texts(items) == ["Roses are red,\n  violets blue.", "A joke\nin two lines", "last"]
    assert [r.where.rsplit(" ", 1)[1] for r in items] == ["3", "8", "12"]
    raw = read(tmp_path, "raw.txt", content, "paragraphs", normalize=False)
    assert raw[0].text == "Roses are red,\r\n  violets blue."


def test_lowercase_and_nfc(tmp_path):
    items = read(tmp_path, "a.txt", "Cafe\u0301 NOIR\n", "lines", lowercase=True)
    assert texts(items) == ["caf\u00e9 noir"]
    raw = read(tmp_path, "b.txt", "Cafe\u0301\n", "lines", normalize=False)
    assert texts(raw) == ["Cafe\u0301"]


# --- csv, tsv, jsonl ------------------------------------------------------------------------------

def test_csv_quoting_embedded_newlines_and_crlf(tmp_path):
    content = ('name,kind\r\n"Smith, John",person\r\n"two\r\nlines",poem\r\n\r\n'
               'plain,thing\r\n"say ""hi""",quote\r\n')
    items = read(tmp_path, "a.csv", content, "csv", label_column="kind")
    assert [(r.text, r.label) for r in items] == [
        ("Smith, John", "person"), ("two\nlines", "poem"), ("plain", "thing"), ('say "hi"', "quote")]
    assert [r.where for r in items] == [f"{tmp_path / 'a.csv'}:row {n}" for n in (2, 3, 4, 5)]


def test_csv_first_column_by_default_and_named_column(tmp_path):
    content = "\ufefftitle,year\nAlien,1979\nHeat,1995\n"  # a BOM as Excel writes, before the header
    assert texts(read(tmp_path, "a.csv", content, "csv")) == ["Alien", "Heat"]
    assert texts(read(tmp_path, "b.csv", content, "csv", text_column="year")) == ["1979", "1995"]
    # normalize off keeps text as another tool read it, but a BOM is never part of a column's name
    assert texts(read(tmp_path, "c.csv", content, "csv", normalize=False, text_column="title")) == [
        "Alien", "Heat"]


def test_tsv(tmp_path):
    items = read(tmp_path, "a.tsv", "label\tname\nred\tcrimson, deep\nblue\t navy \n", "tsv",
                 text_column="name", label_column="label")
    assert [(r.text, r.label) for r in items] == [("crimson, deep", "red"), ("navy", "blue")]


def test_jsonl_with_labels(tmp_path):
    objects = [{"text": "Rex", "kind": "carnivore"}, {"text": "Trike", "kind": 3, "x": [1]}]
    escaped_crlf = '{"text": "Rex\\r\\nII", "kind": "c"}\n'  # JSON's own escapes: CRLF becomes LF too
    content = "\n".join(json.dumps(x) for x in objects) + "\n\n  \n" + escaped_crlf
    items = read(tmp_path, "a.jsonl", content, "jsonl", label_column="kind")
    assert [(r.text, r.label) for r in items] == [("Rex", "carnivore"), ("Trike", "3"), ("Rex\nII", "c")]
    assert items[2].where == f"{tmp_path / 'a.jsonl'}:line 5"


def test_jsonl_named_key(tmp_path):
    items = read(tmp_path, "a.jsonl", '{"name": "Ada", "text": 1}\n', "jsonl", text_column="name")
    assert texts(items) == ["Ada"]


def test_lowercase_applies_to_the_text_not_the_label(tmp_path):
    items = read(tmp_path, "a.csv", "name,kind\nRED Fox,Mammal\n", "csv", label_column="kind",
                 lowercase=True)
    assert (items[0].text, items[0].label) == ("red fox", "Mammal")
    items = read(tmp_path, "a.jsonl", '{"text": "T\\u0065\\u0301", "l": "E\\u0301"}\n', "jsonl",
                 label_column="l", lowercase=True)
    assert (items[0].text, items[0].label) == ("t\u00e9", "\u00c9")  # NFC applies to both


# --- folders, encodings, streaming ---------------------------------------------------------------

def test_folder_of_mixed_files_in_sorted_order(tmp_path):
    _write(tmp_path, "list/b.csv", "x\nfrom-b\n")
    _write(tmp_path, "list/a.txt", "from-a\n")
    _write(tmp_path, "list/c/d.jsonl", "from-d\n")
    _write(tmp_path, "list/c.tsv", "from-c\n")
    _write(tmp_path, "list/notes.md", "not read\n")
    items = list(iter_records([tmp_path / "list"], CorpusConfig(records="lines")))
    # Sorted as paths, part by part (as data.sources sorts .txt files): c/d.jsonl before c.tsv.
    assert texts(items) == ["from-a", "x", "from-b", "from-d", "from-c"]


def test_utf16_and_latin1(tmp_path):
    assert texts(read(tmp_path, "a.txt", "\ufeffna\u00efve\nzo\u00eb\n".encode("utf-16"), "lines",
                      encoding="utf-16")) == ["na\u00efve", "zo\u00eb"]
    assert texts(read(tmp_path, "b.txt", "caf\u00e9\n".encode("latin-1"), "lines",
                      encoding="latin-1")) == ["caf\u00e9"]


@pytest.mark.parametrize("records", ["lines", "paragraphs", "csv", "tsv", "jsonl"])
def test_tiny_pieces_give_the_same_items(tmp_path, monkeypatch, records):
    """A piece may end inside a CRLF or a character: items and their lines do not change."""
    rows = {"jsonl": ['{"text": "caf\\u00e9 \\u00fcber"}', '{"text": "\u00e9t\u00e9"}', "", '{"text": "z"}'],
            "csv": ["text", '"caf\u00e9,\r\n\u00fcber"', "\u00e9t\u00e9", "", "z"],
            "tsv": ["text\tlabel", "caf\u00e9 \u00fcber\tx", "\u00e9t\u00e9\ty", "z\tz"]}
    content = "\r\n".join(rows.get(records, ["caf\u00e9 \u00fcber", "\u00e9t\u00e9", "", "", "z"])) + "\r\n"
    whole = read(tmp_path, "whole", content, records)
    monkeypatch.setattr(sources, "CHUNK_BYTES", 1)
    assert read(tmp_path, "pieces", content, records) == [
        Record(r.text, r.label, r.where.replace("whole", "pieces")) for r in whole]
    assert len(whole) == (2 if records == "paragraphs" else 3)


def test_a_large_file_is_streamed(tmp_path, monkeypatch):
    path = _write(tmp_path, "big.txt", "".join(f"name{i % 5000}\n" for i in range(400_000)))  # ~3.6 MB
    assert path.stat().st_size > 3 * sources.CHUNK_BYTES
    opened = []

    def spy(*args, **kwargs):
        opened.append(builtins.open(*args, **kwargs))  # noqa: SIM115 - records' own with closes it
        return opened[-1]

    monkeypatch.setattr(lines_module, "open", spy, raising=False)
    items = iter_records([path], CorpusConfig(records="lines"))
    assert [r.text for r in itertools.islice(items, 3)] == ["name0", "name1", "name2"]
    assert opened[0].tell() <= sources.CHUNK_BYTES  # one piece read, not the whole file
    rest = sum(1 for _ in items)
    assert rest == 400_000 - 3 and opened[0].closed


# --- errors ----------------------------------------------------------------------------------------

def test_undecodable_text_names_its_line(tmp_path, monkeypatch):
    message = error(tmp_path, "a.txt", b"ok\r\nfine\n\xffbad\n", "lines")
    assert f"{tmp_path / 'a.txt'}:line 3: not valid utf-8 at byte offset 9" in message
    monkeypatch.setattr(sources, "CHUNK_BYTES", 4)  # the bad byte in a later piece, a CRLF split
    assert ":line 3: not valid utf-8 at byte offset 9" in error(tmp_path, "b.txt", b"ok\r\nfine\n\xffbad\n",
                                                                 "lines")
    assert ":line 2: not valid utf-8: the file ends inside a character" in error(
        tmp_path, "c.txt", b"ok\nend\xc3", "lines")


def test_nul_byte_is_binary(tmp_path):
    message = error(tmp_path, "a.txt", b"some text\n" * 20 + b"bin\x00ary\n", "lines")
    assert "a.txt: NUL byte on line 21 (byte offset 203); it looks like a binary file" in message


@pytest.mark.parametrize(("name", "content", "settings", "expected"), [
    ("a.csv", "name,kind\nx,y\n", {"text_column": "title"},
     "a.csv:row 1: no column 'title' in the header; its columns: 'name', 'kind'; set text_column"),
    ("a.csv", "name,kind\nx,y\n", {"label_column": "label"}, "a.csv:row 1: no column 'label'"),
    ("a.tsv", "name\tkind\nx\ty\n \tz\n", {"label_column": "kind"}, "a.tsv:row 3: no text in column 'name'"),
    ("a.csv", "name,kind\nx,y\n,z\n", {}, "a.csv:row 3: no text in column 'name'"),
    ("a.csv", "name,kind\nx,y\nshort\n", {"label_column": "kind"},
     "a.csv:row 3: empty label in column 'kind'"),
    ("a.csv", "name,kind\nx,  \n", {"label_column": "kind"}, "a.csv:row 2: empty label"),
    ("a.jsonl", '{"text": "a"}\n{"name": "b", "id": 1}\n', {},
     "a.jsonl:line 2: no key 'text'; the object's keys: 'name', 'id'; set text_column"),
    ("a.jsonl", '{"text": "a"}\n{"text": "  "}\n', {}, "a.jsonl:line 2: no text in key 'text'"),
    ("a.jsonl", '{"text": "a"}\n\n{"text": "b",}\n', {}, "a.jsonl:line 3: not valid JSON"),
    ("a.jsonl", '["a"]\n', {}, "a.jsonl:line 1: an array, not a JSON object"),
    ("a.jsonl", '"a"\n', {}, "a.jsonl:line 1: a string, not a JSON object"),
    ("a.jsonl", '{"text": 12}\n', {}, "a.jsonl:line 1: 'text' is a number, not a string"),
    ("a.jsonl", '{"text": "a", "l": true}\n', {"label_column": "l"},
     "a.jsonl:line 1: 'l' is true/false, not a string or an integer"),
    ("a.jsonl", '{"text": "a", "l": 1.5}\n', {"label_column": "l"}, "'l' is a number, not a string or"),
    ("a.jsonl", '{"text": "a", "l": null}\n', {"label_column": "l"}, "'l' is null"),
    ("a.jsonl", '{"text": "a", "l": ""}\n', {"label_column": "l"}, "a.jsonl:line 1: empty label in key 'l'"),
    ("a.jsonl", '{"text": "a"}\n', {"label_column": "l"}, "a.jsonl:line 1: no key 'l'"),
    ("a.txt", "ok\n" + "x" * (MAX_ITEM_CHARS + 1) + "\n", {},
     f"a.txt:line 2: an item of {MAX_ITEM_CHARS + 1:,} characters, over the limit of {MAX_ITEM_CHARS:,}"),
])
def test_bad_rows_name_file_and_line_or_row(tmp_path, name, content, settings, expected):
    records = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".txt": "lines"}[Path(name).suffix]
    assert expected in error(tmp_path, name, content, records, **settings)


def test_an_item_of_exactly_the_limit_is_kept(tmp_path):
    assert len(read(tmp_path, "a.txt", "y" * MAX_ITEM_CHARS, "lines")[0].text) == MAX_ITEM_CHARS


@pytest.mark.parametrize("symbol", [START, END, "\x01", "\ue000", "\uf8ff"])
def test_reserved_characters_are_refused(tmp_path, symbol):
    message = error(tmp_path, "a.txt", f"ok\nbad{symbol}item\n", "lines")
    assert f"a.txt:line 2: the item holds U+{ord(symbol):04X}, a character reserved" in message
    message = error(tmp_path, "a.csv", f"t,l\nok,x{symbol}\n", "csv", label_column="l")
    assert "a.csv:row 2: the label holds" in message
    assert symbol not in message  # named by its code point, never printed raw


def test_paragraph_over_the_limit_is_refused(tmp_path):
    message = error(tmp_path, "a.txt", "short\n\n" + "word\n" * (MAX_ITEM_CHARS // 4), "paragraphs")
    assert "a.txt:line 3: an item of" in message and "over the limit" in message


def test_overlong_lines_and_csv_fields(tmp_path, monkeypatch):
    monkeypatch.setattr(records_module, "MAX_LINE_CHARS", 100)
    monkeypatch.setattr(lines_module, "MAX_LINE_CHARS", 100)
    monkeypatch.setattr(sources, "CHUNK_BYTES", 64)
    assert "a.jsonl:line 2: a line of over 100 characters" in error(
        tmp_path, "a.jsonl", '{"text": "a"}\n' + "x" * 500, "jsonl")
    assert "b.txt:line 1: a paragraph of over 100" in error(tmp_path, "b.txt", "x\n" * 200, "paragraphs")
    monkeypatch.undo()
    field = "x" * (csv.field_size_limit() + 1)  # past the csv module's own limit: its error, file and line
    assert "c.csv:line 2: not valid csv (field larger" in error(tmp_path, "c.csv", f"t,u\na,{field}\n", "csv")


def test_no_items_at_all(tmp_path):
    assert "no items in " + str(tmp_path / "a.txt") in error(tmp_path, "a.txt", "\n  \n\n", "lines")
    _write(tmp_path, "d/x.csv", "name,kind\n")
    _write(tmp_path, "d/y.csv", "")
    with pytest.raises(CorpusError, match="no items in any of the 2 files"):
        list(iter_records([tmp_path / "d"], CorpusConfig(records="csv")))
    _write(tmp_path, "d/z.csv", "name\nok\n")  # one file with items: the empty ones are fine
    assert texts(list(iter_records([tmp_path / "d"], CorpusConfig(records="csv")))) == ["ok"]


def test_paths_that_are_not_files(tmp_path):
    with pytest.raises(CorpusError, match=r"missing\.txt: no such file or directory"):
        list(iter_records([tmp_path / "missing.txt"], CorpusConfig(records="lines")))
    (tmp_path / "empty").mkdir()
    _write(tmp_path, "empty/notes.md", "x\n")
    with pytest.raises(CorpusError, match=r"empty: directory holds no \.txt, \.csv, \.tsv, \.jsonl files"):
        list(iter_records([tmp_path / "empty"], CorpusConfig(records="lines")))
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe")
        with pytest.raises(CorpusError, match="pipe: is a named pipe"):
            list(iter_records([tmp_path / "pipe"], CorpusConfig(records="lines")))


def test_records_must_be_set(tmp_path):
    with pytest.raises(ConfigError, match="needs records set"):
        list(iter_records([_write(tmp_path, "a.txt", "x\n")], CorpusConfig()))
