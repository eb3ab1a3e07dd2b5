"""Preparing corpora in streaming passes: same result as in memory, safe with bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _runs import invoke, write_text
from charlstm.cli.app import app
from charlstm.config.corpus import CorpusConfig
from charlstm.data import sources as corpus
from charlstm.data.prepare import prepare_corpus
from charlstm.data.prepared import open_prepared
from charlstm.data.sources import load_text
from charlstm.data.vocab import Vocab
from charlstm.data.writer import write_prepared
from charlstm.errors import CheckpointError, CorpusError

START = "*** START OF THE PROJECT GUTENBERG EBOOK TEST ***"
END = "*** END OF THE PROJECT GUTENBERG EBOOK TEST ***"


def write_books(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    words = ["Alice", "caf\u00e9", "cafe\u0301", "rabbit", "\u00e9t\u00e9", "queen", "tea,", "door."]
    for i in range(3):
        body = "\r\n".join(" ".join(rng.choice(words, 12)) for _ in range(400))
        text = f"\ufeffheader {i}\r\n{START}\r\n\r\n{body}\r\n\r\n{END}\r\nlicence text\r\n"
        (folder / f"book{i}.txt").write_text(text, encoding="utf-8")
    return folder


@pytest.mark.parametrize("chunk_bytes", [7, 1000, 1 << 22])
def test_streaming_prepare_equals_cleaning_in_memory(tmp_path, monkeypatch, chunk_bytes):
    books = write_books(tmp_path / "books")
    config = CorpusConfig(lowercase=True)
    text = load_text([books], config)
    expected = write_prepared(text, Vocab.from_text(text), tmp_path / "memory", val_fraction=0.1,
                              test_fraction=0.05)
    monkeypatch.setattr(corpus, "CHUNK_BYTES", chunk_bytes)
    prepared = prepare_corpus([books], tmp_path / "stream", corpus=config, val_fraction=0.1,
                              test_fraction=0.05, progress_bar=False)
    assert prepared.vocab == expected.vocab
    assert prepared.meta["sizes"] == expected.meta["sizes"]
    assert prepared.meta["sha256"] == expected.meta["sha256"]
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(prepared.split(split), expected.split(split))
    assert "gutenberg" not in prepared.vocab.decode(prepared.split("train")).lower()
    assert "\r" not in prepared.vocab.chars and "\ufeff" not in prepared.vocab.chars


def test_an_existing_data_folder_is_never_overwritten(tmp_path):
    books = write_books(tmp_path / "books")
    prepare_corpus([books], tmp_path / "data", progress_bar=False)
    before = {p.name: p.read_bytes() for p in (tmp_path / "data").iterdir()}
    with pytest.raises(CheckpointError, match="already holds prepared data"):
        prepare_corpus([books], tmp_path / "data", progress_bar=False)
    assert {p.name: p.read_bytes() for p in (tmp_path / "data").iterdir()} == before


def test_a_vocabulary_above_65535_symbols_is_refused(tmp_path):
    path = tmp_path / "wide.txt"
    path.write_text("".join(chr(0x10000 + i) for i in range(70000)), encoding="utf-8")
    with pytest.raises(CorpusError, match="65,535"):
        prepare_corpus([path], tmp_path / "data", progress_bar=False)
    assert not (tmp_path / "data" / "meta.json").exists()


def test_empty_text_is_refused(tmp_path):
    (tmp_path / "empty.txt").write_text(f"{START}\n\n{END}\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="empty"):
        prepare_corpus([tmp_path / "empty.txt"], tmp_path / "data", progress_bar=False)


def test_cli_prepare_then_train_from_the_data_folder(tmp_path):
    books = write_books(tmp_path / "books")
    runner = CliRunner()
    result = runner.invoke(app, ["prepare", str(books), "--out", str(tmp_path / "data"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "vocabulary" in result.output
    args = ["train", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--max-steps", "3",
            "--hidden-size", "16", "--num-layers", "1", "--seq-len", "16", "--batch-size", "4",
            "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert Path(config["data_dir"]) == (tmp_path / "data").resolve()
    assert not (tmp_path / "run" / "data").exists()  # trained in place, nothing copied
    result = runner.invoke(app, ["eval", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["generate", str(tmp_path / "run"), "--length", "20", "--seed", "1"])
    assert result.exit_code == 0, result.output


def test_a_truncated_token_file_is_a_clear_error(tmp_path):
    books = write_books(tmp_path / "books")
    data = prepare_corpus([books], tmp_path / "data", progress_bar=False)
    train_bin = tmp_path / "data" / "train.bin"
    train_bin.write_bytes(train_bin.read_bytes()[:-10])
    with pytest.raises(CorpusError, match="truncated"):
        open_prepared(data.root).split("train")
    result = CliRunner().invoke(app, ["train", str(tmp_path / "data"), "--out", str(tmp_path / "run"),
                                      "--max-steps", "1", "--no-progress"])
    assert result.exit_code == 3 and "truncated" in result.output
    assert not (tmp_path / "run").exists()


def test_prepare_refuses_a_folder_that_is_not_empty_unless_forced(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("hello there, general\n" * 50, encoding="utf-8")
    out = tmp_path / "data"
    out.mkdir()
    (out / "mine.txt").write_text("keep", encoding="utf-8")
    runner = CliRunner()
    refused = runner.invoke(app, ["prepare", str(text), "--out", str(out), "--no-progress"])
    assert refused.exit_code == 4 and "--force" in refused.output
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    forced = runner.invoke(app, ["prepare", str(text), "--out", str(out), "--no-progress", "--force"])
    assert forced.exit_code == 0, forced.output
    assert (out / "mine.txt").read_text(encoding="utf-8") == "keep" and open_prepared(out).total_characters


def test_prepare_never_writes_into_a_run_folder(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("hello there, general\n" * 50, encoding="utf-8")
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"train": {}}), encoding="utf-8")
    for out in (run, run / "data"):
        args = ["prepare", str(text), "--out", str(out), "--force", "--no-progress"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 4 and "run folder" in result.output
    assert sorted(p.name for p in run.rglob("*")) == ["config.json", "data"]


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_long_line_prepared_in_tiny_pieces_is_byte_identical(tmp_path, monkeypatch):
    from charlstm.data import cleaning

    line = " ".join(["Alice", "caf\u00e9", "cafe\u0301", "\u00e9t\u00e9", "tea,\r\n", "queen\r"] * 2000)
    path = tmp_path / "long.txt"
    path.write_text(f"\ufeffhead\r\n{START}\r\n{line}{line}\r\n\r\n{END}\r\nlicence\r\n", encoding="utf-8")
    normal = prepare_corpus([path], tmp_path / "normal", val_fraction=0.1, progress_bar=False)
    # Pieces of a few bytes, and a held-back partial line and header window of a few characters.
    monkeypatch.setattr(corpus, "CHUNK_BYTES", 5)
    monkeypatch.setattr(cleaning, "LINE_HOLD", 64)
    monkeypatch.setattr(cleaning, "HEADER_WINDOW", 256)
    tiny = prepare_corpus([path], tmp_path / "tiny", val_fraction=0.1, progress_bar=False)
    assert _folder_bytes(tiny.root) == _folder_bytes(normal.root)
    assert normal.total_characters > 20_000 and "licence" not in normal.vocab.decode(normal.split("val"))


def test_a_whitespace_only_corpus_is_refused(tmp_path):
    (tmp_path / "blank.txt").write_text("   \n\n\t  \n  ", encoding="utf-8")
    with pytest.raises(CorpusError, match="only whitespace"):
        prepare_corpus([tmp_path / "blank.txt"], tmp_path / "data", progress_bar=False)
    assert not (tmp_path / "data").exists()


def test_a_whitespace_only_file_is_warned_about_once(tmp_path, caplog):
    books = write_books(tmp_path / "books")
    (books / "blank.txt").write_text("   \n  \n", encoding="utf-8")
    with caplog.at_level("WARNING", logger="charlstm"):
        prepare_corpus([books], tmp_path / "data", progress_bar=False)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(books / "blank.txt") in warnings[0], warnings


def test_the_cli_shows_the_whitespace_warning(tmp_path):
    from _runs import invoke

    books = write_books(tmp_path / "books")
    (books / "blank.txt").write_text("  \n\t\n", encoding="utf-8")
    result = invoke("prepare", books, "--out", tmp_path / "data", "--no-progress")
    assert result.exit_code == 0, result.output
    assert f"{books / 'blank.txt'}: nothing but whitespace" in result.stderr


@pytest.mark.parametrize(("encoding", "code", "says"), [
    ("rot13", 2, "encoding 'rot13' is not a text encoding"),
    ("bz2", 2, "encoding 'bz2' is not a text encoding"),
    ("base64", 2, "encoding 'base64' is not a text encoding"),
    ("undefined", 2, "encoding 'undefined' cannot decode text"),
    ("punycode", 3, "not valid punycode"),  # a text codec, but this text is not punycode
])
def test_prepare_and_train_refuse_an_encoding_that_cannot_read_the_text(tmp_path, encoding, code, says):
    from _runs import invoke

    text = tmp_path / "t.txt"
    text.write_text("hello there, general kenobi\n" * 50, encoding="utf-8")
    for command, out in (("prepare", tmp_path / "data"), ("train", tmp_path / "run")):
        result = invoke(command, text, "--out", out, "--encoding", encoding, "--no-progress")
        assert result.exit_code == code and says in result.stderr, result.output
        assert len(result.stderr.splitlines()) == 1 and (code == 2 or str(text) in result.stderr)
    assert not (tmp_path / "data").exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["prepare", "train"])
def test_a_pipe_or_a_device_given_as_text_says_what_it_is(tmp_path, command):
    from _runs import invoke
    from test_sources import unblocking

    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    cases = [(fifo, "is a named pipe (FIFO), not a regular file")]
    cases += [(Path(d), "is a character device") for d in ("/dev/null", "/dev/zero") if Path(d).exists()]
    with unblocking(fifo):
        for path, says in cases:
            result = invoke(command, path, "--out", tmp_path / "out", "--no-progress")
            assert result.exit_code == 3 and f"{path}: {says}" in result.stderr, result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("flag", "value"), [("--val-fraction", "nan"), ("--test-fraction", "nan"),
                                             ("--val-fraction", "-0.1"), ("--test-fraction", "0.95")])
def test_split_fractions_out_of_range_are_refused_before_reading(tmp_path, flag, value):
    result = invoke("prepare", write_text(tmp_path / "t.txt"), "--out", tmp_path / "data", flag, value)
    assert result.exit_code == 2 and "fraction" in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "data").exists()
