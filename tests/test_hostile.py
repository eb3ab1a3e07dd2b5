"""Hostile inputs through the CLI: each ends in one error line and a non-zero exit, never a
traceback, and the files that were there before are still there and still load.

The service's cases are in test_serve.py, the text's (here only through the CLI) in
test_sources.py and test_prepare.py;
the run folder's pruning and stuck runs in test_folder.py, kills in test_kill.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from _runs import invoke, make_unreadable, sample_text, train_stream_run, write_text
from charlstm.runs.checkpoint import read_meta
from charlstm.runs.folder import LAST
from charlstm.runs.loading import load_model
from charlstm.runs.lock import LOCK_FILE


@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    return train_stream_run(root / "run", write_text(root / "t.txt", words=1500))


@pytest.fixture
def run(source_run, tmp_path) -> Path:
    return Path(shutil.copytree(source_run, tmp_path / "run"))


def _files(folder: Path) -> dict[str, bytes]:
    """Every file's bytes, but the lock's: it names whoever last held the folder."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != LOCK_FILE}


def _one_error(result, exit_code: int, *fragments: str) -> None:
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("charlstm: error: ")]
    assert len(errors) == 1 and all(f in errors[0] for f in fragments), result.stderr


def _rewrite(path: Path, out: Path, *, meta=None, tensors=None) -> Path:
    """A copy of checkpoint ``path`` with its metadata record or tensors changed."""
    with safe_open(str(path), "pt") as f:
        header = f.metadata()
    key = next(k for k in header if k != "format")
    record, weights = json.loads(header[key]), load_file(str(path))
    if meta:
        meta(record)
    if tensors:
        tensors(weights)
    save_file(weights, str(out), metadata={**header, key: json.dumps(record)})
    return out


@pytest.mark.parametrize(("name", "meta", "tensors", "fragment"), [
    ("huge", lambda r: r["model_config"].update(hidden_size=60_000), None, "do not fit"),
    ("too-huge", lambda r: r["model_config"].update(hidden_size=10**7), None, "hidden_size must be in"),
    ("short-vocab", lambda r: (r.update(vocab=r["vocab"][:-3]), r["model_config"].update(
        vocab_size=len(r["vocab"]))), None, "do not fit"),
    ("nan", None, lambda t: t["model/head.weight"].fill_(float("nan")), "NaN"),
    ("framing", lambda r: r["train_config"].update(framing="bogus"), None, "framing"),
    ("seq-len", lambda r: r["train_config"].update(seq_len=-5), None, "seq_len"),
])
def test_checkpoint_metadata_is_checked_before_use(run, tmp_path, name, meta, tensors, fragment):
    bad = _rewrite(run / LAST, tmp_path / f"{name}.safetensors", meta=meta, tensors=tensors)
    _one_error(invoke("generate", bad, "--length", "5", "--prompt", "the "), 4, fragment)


def test_non_finite_weights_export_only_when_asked(run, tmp_path):
    bad = _rewrite(run / LAST, tmp_path / "nan.safetensors",
                   tensors=lambda t: t["model/head.weight"].fill_(float("nan")))
    out = tmp_path / "out.safetensors"
    _one_error(invoke("export", bad, "--format", "safetensors", "--out", out), 4, "NaN")
    assert invoke("export", bad, "--format", "safetensors", "--out", out, "--allow-nonfinite").exit_code == 0


def test_a_model_too_big_for_memory_is_one_line_and_leaves_nothing(tmp_path):
    out = tmp_path / "big"
    _one_error(invoke("train", write_text(tmp_path / "t.txt"), "--out", out, "--hidden-size", "65536",
                      "--num-layers", "64", "--max-steps", "1", "--no-progress"), 2, "GB to train")
    assert not out.exists()


@pytest.mark.parametrize(("flag", "value"), [("--num-layers", "100000"), ("--hidden-size", "1000000000000"),
                                             ("--seq-len", "10000000"), ("--val-fraction", "nan"),
                                             ("--test-fraction", "nan"), ("--lr", "inf")])
def test_settings_out_of_range_are_refused_before_anything_is_made(tmp_path, flag, value):
    out = tmp_path / "run"
    _one_error(invoke("train", write_text(tmp_path / "t.txt"), "--out", out, flag, value, "--no-progress"),
               2, f"{flag[2:].replace('-', '_')} must be in")
    assert not out.exists()


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_an_impossible_out_is_one_line(tmp_path, where):
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    out = {"under-a-file": tmp_path / "afile" / "run", "proc": Path("/proc/charlstm-test")}[where]
    result = invoke("train", write_text(tmp_path / "t.txt"), "--out", out, "--max-steps", "1",
                    "--no-progress")
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert (tmp_path / "afile").read_text(encoding="utf-8") == "x"


@pytest.mark.parametrize(("damaged", "exit_code"), [("config.json", 4), ("data/meta.json", 3)])
def test_damaged_run_files_are_one_line_and_the_checkpoints_survive(run, damaged, exit_code):
    (run / damaged).write_text("{bad", encoding="utf-8")
    before = _files(run)
    _one_error(invoke("eval", run), exit_code, "damaged")
    _one_error(invoke("train", "--resume", run, "--max-steps", "9", "--no-progress"), exit_code, "damaged")
    assert _files(run) == before
    assert load_model(run).model is not None


def test_eval_without_config_json_still_finds_the_runs_own_data(run):
    (run / "config.json").unlink()
    result = invoke("eval", run, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["characters"] > 0


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"),
                                   SafetensorError("Error while serializing: No space left on device")])
def test_disk_full_while_saving_keeps_the_previous_checkpoint(run, monkeypatch, error):
    import charlstm.runs.checkpoint as checkpoint

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a checkpoint")
        raise error

    before = (run / LAST).read_bytes()
    real_save = checkpoint.save_file
    monkeypatch.setattr(checkpoint, "save_file", full)
    result = invoke("train", "--resume", run, "--max-steps", "9", "--no-progress")
    assert result.exit_code == 1 and "No space left on device" in result.stderr, result.output
    assert "Traceback" not in result.output and ".tmp-" not in result.output
    assert f"{run / LAST}: cannot write the checkpoint" in result.stderr or "best-" in result.stderr
    assert (run / LAST).read_bytes() == before and not list(run.glob(".tmp-*"))
    monkeypatch.setattr(checkpoint, "save_file", real_save)  # space freed: the run carries on
    assert invoke("train", "--resume", run, "--max-steps", "9", "--no-progress").exit_code == 0
    assert read_meta(run / LAST).progress.step == 9


def test_export_to_an_impossible_path_is_one_line(run):
    result = invoke("export", run, "--format", "safetensors", "--out", "/proc/charlstm-test/x.safetensors")
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "charlstm: error: " in result.stderr


def _utf16(folder: Path, monkeypatch) -> Path:
    path = folder / "wide.txt"
    path.write_bytes(sample_text(200).encode("utf-16-le"))  # no byte-order mark
    return path


def _late_nul(folder: Path, monkeypatch) -> Path:
    path = folder / "late.txt"
    path.write_bytes(sample_text(20_000).encode("utf-8") + b"\x00tail\n")  # past the first 64 KB
    return path


def _blank(folder: Path, monkeypatch) -> Path:
    path = folder / "blank.txt"
    path.write_text("   \n\n \t \n   ", encoding="utf-8")
    return path


def _unreadable(folder: Path, monkeypatch) -> Path:
    write_text(folder / "books" / "a.txt")
    make_unreadable(write_text(folder / "books" / "b.txt", seed=1), monkeypatch)
    return folder / "books"


@pytest.mark.parametrize(("make", "fragments"), [
    (_utf16, ("wide.txt", "looks like UTF-16")),
    (_late_nul, ("late.txt", "NUL byte at byte offset")),
    (_blank, ("blank.txt", "only whitespace")),
    (_unreadable, ("b.txt", "cannot read")),
], ids=["utf-16", "late-nul", "whitespace", "unreadable"])
def test_hostile_text_is_one_line_and_the_data_survives(tmp_path, monkeypatch, make, fragments):
    data = tmp_path / "data"
    assert invoke("prepare", write_text(tmp_path / "good.txt"), "--out", data, "--no-progress").exit_code == 0
    before = _files(data)
    (tmp_path / "bad").mkdir()
    bad = make(tmp_path / "bad", monkeypatch)
    _one_error(invoke("prepare", bad, "--out", data, "--force", "--no-progress"), 3, *fragments)
    assert _files(data) == before
    _one_error(invoke("train", bad, "--out", tmp_path / "run", "--max-steps", "1", "--no-progress"), 3,
               *fragments)
    assert not (tmp_path / "run").exists()


def test_utf16_text_reads_with_the_encoding_the_error_names(tmp_path, monkeypatch):
    wide = _utf16(tmp_path, monkeypatch)
    refused = invoke("prepare", wide, "--out", tmp_path / "data", "--no-progress")
    assert "charlstm: hint: --encoding utf-16" in refused.stderr.splitlines()
    result = invoke("prepare", wide, "--out", tmp_path / "data", "--no-progress", "--encoding", "utf-16")
    assert result.exit_code == 0, result.output
    assert "\x00" not in json.loads((tmp_path / "data" / "meta.json").read_text(encoding="utf-8"))["vocab"]


def test_resuming_a_folder_that_does_not_exist_says_so(tmp_path):
    _one_error(invoke("train", "--resume", tmp_path / "nope", "--no-progress"), 4, "no such run folder")
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    _one_error(invoke("train", "--resume", tmp_path / "afile", "--no-progress"), 4, "not a run folder")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:3", "foo", "cuda:x", "cpu:1"])
@pytest.mark.parametrize("command", ["train", "generate", "eval", "report"])
def test_a_device_this_machine_lacks_is_one_line(source_run, tmp_path, command, device):
    args = {"train": ("train", write_text(tmp_path / "t.txt"), "--out", tmp_path / "new", "--max-steps", "1"),
            "generate": ("generate", source_run, "--length", "5"), "eval": ("eval", source_run),
            "report": ("report", source_run, "--out", tmp_path / "r.html")}[command]
    _one_error(invoke(*args, "--device", device), 2, "device")
    assert not (tmp_path / "new").exists() and not (tmp_path / "r.html").exists()
