"""A run never follows a symbolic link out of itself to write or delete."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from _runs import invoke, train_stream_run, write_text
from charlstm.runs.files import open_own, remove_own, write_atomic
from charlstm.runs.manifest import MANIFEST_FILE, read_manifest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need privileges there")

NOTES = "my notes\nthe last line, with no newline"


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return train_stream_run(tmp_path / "run", write_text(tmp_path / "t.txt"), max_steps=4, keep_best=1)


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text(NOTES, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["metrics.jsonl", "train.log"])
def test_a_run_file_linked_to_a_users_file_is_refused_and_the_file_untouched(run, notes, name):
    (run / name).unlink()
    (run / name).symlink_to(notes)
    result = invoke("train", "--resume", run, "--max-steps", "6", "--no-progress")
    assert result.exit_code == 4 and "symbolic link" in result.output, result.output
    assert notes.read_text(encoding="utf-8") == NOTES


def test_open_own_and_write_atomic_never_reach_through_a_link(tmp_path, notes):
    link = tmp_path / "link"
    link.symlink_to(notes)
    with pytest.raises(Exception, match="symbolic link"):
        open_own(link)
    write_atomic(link, "replaced")
    assert not link.is_symlink() and link.read_text(encoding="utf-8") == "replaced"
    assert notes.read_text(encoding="utf-8") == NOTES


def test_remove_own_takes_away_a_link_not_its_target(tmp_path, notes):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "book.txt").write_text("keep me", encoding="utf-8")
    for target, link in ((notes, tmp_path / "a"), (corpus, tmp_path / "b")):
        link.symlink_to(target)
        remove_own(link)
        assert not link.exists() and not link.is_symlink() and target.exists()
    assert (corpus / "book.txt").read_text(encoding="utf-8") == "keep me"


def test_a_manifest_entry_outside_the_run_is_never_deleted(run, tmp_path):
    outside = tmp_path / "precious.safetensors"
    outside.write_bytes(b"not yours")
    listed = read_manifest(run)
    (run / MANIFEST_FILE).write_text(json.dumps({"best": [
        *({"name": n, "metric": m} for n, m in listed.items()),
        {"name": "../precious.safetensors", "metric": 9.0}, {"name": str(outside), "metric": 9.5}]}),
        encoding="utf-8")
    assert set(read_manifest(run)) == set(listed)
    assert invoke("train", "--resume", run, "--max-steps", "12", "--eval-every", "2",
                  "--no-progress").exit_code == 0
    assert outside.read_bytes() == b"not yours"


def test_overwrite_removes_a_linked_data_folder_as_a_link(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "train.bin").write_bytes(b"the user's")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"train": {}}', encoding="utf-8")
    (run / "data").symlink_to(corpus)
    result = invoke("train", write_text(tmp_path / "t.txt"), "--out", run, "--overwrite", "--max-steps", "2",
                    "--hidden-size", "8", "--num-layers", "1", "--no-progress")
    assert result.exit_code == 0, result.output
    assert (corpus / "train.bin").read_bytes() == b"the user's" and not (run / "data").is_symlink()


@pytest.mark.parametrize("name", ["../../esc/x-{step}", "/tmp/abs-{step}", "{foo}", "{loss:d}", "last"])
def test_a_checkpoint_name_outside_the_run_or_unformattable_is_refused_before_training(tmp_path, name):
    out = tmp_path / "run"
    result = invoke("train", write_text(tmp_path / "t.txt"), "--out", out, "--checkpoint-name", name,
                    "--keep-best", "1", "--max-steps", "2", "--no-progress")
    assert result.exit_code == 2 and "checkpoint_name" in result.output, result.output
    assert "Traceback" not in result.output and not out.exists()
    assert not (tmp_path / "esc").exists()
