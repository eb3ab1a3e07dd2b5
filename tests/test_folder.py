"""Run folders: metrics.jsonl survives a kill mid-write, the run owns (and prunes) only its own
checkpoints, and a run that died early can be resumed or replaced."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from _runs import invoke, train_stream_run, write_text
from charlstm.runs.checkpoint import read_meta
from charlstm.runs.folder import LAST, best_checkpoints
from charlstm.runs.manifest import MANIFEST_FILE, read_manifest
from charlstm.runs.metrics import METRICS_FILE, append_metrics, read_metrics
from charlstm.training import session as api


def test_append_cuts_a_partial_last_line_instead_of_gluing_onto_it(tmp_path, caplog):
    path = tmp_path / METRICS_FILE
    path.write_text('{"step": 1, "val_loss": 2.0}\n{"step": 2, "val_lo', encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        append_metrics(tmp_path, {"step": 3, "val_loss": 1.5})
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 3]
    assert "partial last line" in caplog.text


def test_append_to_a_file_that_is_all_partial_line(tmp_path):
    (tmp_path / METRICS_FILE).write_text('{"step": 1, "val', encoding="utf-8")
    append_metrics(tmp_path, {"step": 2})
    assert read_metrics(tmp_path) == [{"step": 2}]


def test_append_to_a_whole_file_keeps_everything(tmp_path):
    for step in range(3):
        append_metrics(tmp_path, {"step": step})
    assert [r["step"] for r in read_metrics(tmp_path)] == [0, 1, 2]


def test_readers_skip_a_broken_line_with_a_warning(tmp_path, caplog):
    (tmp_path / METRICS_FILE).write_text('{"step": 1}\n{"step": 2, "val_lo\n[1, 2]\n\n{"step": 3}\n',
                                         encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        assert read_metrics(tmp_path) == [{"step": 1}, {"step": 3}]
    assert "line 2" in caplog.text


# ---- a run folder owns its files --------------------------------------------------------------


def _run(tmp_path: Path, **overrides) -> Path:
    # Improving at every evaluation (every 2 steps), keeping 2: pruning runs from the third.
    return train_stream_run(tmp_path / "run", write_text(tmp_path / "t.txt", words=1500),
                            **{"max_steps": 6, "eval_every": 2, "keep_best": 2, **overrides})


def _own_best(run: Path) -> list[str]:
    return sorted(p.name for _, p in best_checkpoints(run))


def test_pruning_deletes_only_the_checkpoints_the_run_wrote(tmp_path):
    run = _run(tmp_path)
    assert len(_own_best(run)) == 2 and set(_own_best(run)) == set(read_manifest(run))
    export = run / "my-export.safetensors"
    shutil.copy(best_checkpoints(run)[0][1], export)  # a user's copy: a valid checkpoint with a metric
    (run / "notes.safetensors").write_bytes(b"not a checkpoint")
    result = invoke("train", "--resume", run, "--max-steps", "12", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "notes.safetensors is not one of this run's checkpoints" in result.output
    assert export.is_file() and (run / "notes.safetensors").read_bytes() == b"not a checkpoint"
    assert export.name not in _own_best(run) and len(_own_best(run)) == 2
    assert read_meta(run / LAST).progress.step == 12
    for command in (["generate", run, "--length", "5", "--prompt", "the "], ["info", run], ["eval", run]):
        assert invoke(*command).exit_code == 0


def test_a_run_from_before_manifests_adopts_its_own_and_skips_a_broken_file(tmp_path):
    run = _run(tmp_path)
    (run / MANIFEST_FILE).unlink()
    (run / "broken.safetensors").write_bytes(b"\x00" * 50)
    assert len(_own_best(run)) == 2  # read file by file; the broken one skipped
    assert invoke("train", "--resume", run, "--max-steps", "10", "--no-progress").exit_code == 0
    assert set(read_manifest(run)) == set(_own_best(run)) and len(_own_best(run)) == 2
    assert (run / "broken.safetensors").is_file()


def test_resume_after_a_kill_between_best_and_last_starts_from_the_newest_best(tmp_path):
    run = _run(tmp_path)
    newest = max(best_checkpoints(run), key=lambda item: read_meta(item[1]).progress.step)[1]
    (run / LAST).unlink()
    trainer = api.resume_run(run, progress_bar=False)
    assert trainer.progress.step == read_meta(newest).progress.step == 6


def test_a_listed_checkpoint_a_kill_kept_from_being_written_is_forgotten(tmp_path):
    run = _run(tmp_path)
    real = _own_best(run)
    ghost = "best-01-000001-0.0001.safetensors"  # listed first, never written: the best "metric" of all
    listed = read_manifest(run)
    (run / MANIFEST_FILE).write_text(json.dumps(
        {"best": [{"name": n, "metric": m} for n, m in {**listed, ghost: 0.0001}.items()]}), encoding="utf-8")
    api.resume_run(run, progress_bar=False).close()
    assert set(read_manifest(run)) == set(real)
    # and pruning never lets a gone file take a real one's place among the kept
    (run / MANIFEST_FILE).write_text(json.dumps(
        {"best": [{"name": n, "metric": m} for n, m in {**listed, ghost: 0.0001}.items()]}), encoding="utf-8")
    assert invoke("train", "--resume", run, "--max-steps", "8", "--no-progress").exit_code == 0
    assert ghost not in read_manifest(run) and len(_own_best(run)) == 2


def test_resume_removes_the_temporary_files_of_an_interrupted_write(tmp_path):
    run = _run(tmp_path)
    orphans = [run / ".tmp-abc123.safetensors", run / ".tmp-x.json"]
    orphans[0].write_bytes(b"")
    orphans[1].write_bytes(b"{" * 1000)
    api.resume_run(run, progress_bar=False).close()
    assert not any(p.exists() for p in orphans)


def _stuck(tmp_path: Path) -> Path:
    """A run that died before its first checkpoint: config.json, data/, metrics, no checkpoint."""
    run = _run(tmp_path)
    for path in run.glob("*.safetensors"):
        path.unlink()
    (run / MANIFEST_FILE).unlink()
    return run


def test_a_run_that_died_before_its_first_checkpoint_resumes_from_step_0(tmp_path):
    run = _stuck(tmp_path)
    refused = invoke("train", write_text(tmp_path / "t2.txt"), "--out", run, "--no-progress")
    assert refused.exit_code == 4 and "--resume" in refused.output and "--overwrite" in refused.output
    result = invoke("train", "--resume", run, "--max-steps", "4", "--no-progress")
    assert result.exit_code == 0, result.output
    assert read_meta(run / LAST).progress.step == 4
    assert [m["step"] for m in read_metrics(run)] == [2, 4]  # the dead attempt's lines are gone


def test_overwrite_replaces_only_a_run_without_checkpoints(tmp_path):
    run = _stuck(tmp_path)
    other = write_text(tmp_path / "other.txt", words=900, seed=4)
    result = invoke("train", other, "--out", run, "--overwrite", "--max-steps", "2", "--eval-every", "2",
                    "--hidden-size", "8", "--num-layers", "1", "--no-progress")
    assert result.exit_code == 0, result.output
    assert read_meta(run / LAST).model_config.hidden_size == 8
    again = invoke("train", other, "--out", run, "--overwrite", "--no-progress")
    assert again.exit_code == 4 and "already holds a run" in again.output
    assert read_meta(run / LAST).progress.step == 2  # untouched
