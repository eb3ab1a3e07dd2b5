"""Training loop: exact resume, stopping rules, checkpoint policy, divergence, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from _runs import TINY_STREAM, train_stream_run, write_text
from charlstm.config.train import TrainConfig
from charlstm.data.prepared import open_prepared
from charlstm.errors import CheckpointError, ConfigError, CorpusError, TrainingDivergedError
from charlstm.framing.stream import EVAL_ROWS, evaluate_stream
from charlstm.model import runtime
from charlstm.runs import folder as runs
from charlstm.runs.checkpoint import load_checkpoint, read_meta
from charlstm.runs.loading import load_model
from charlstm.runs.metrics import read_metrics
from charlstm.training import session as api
from charlstm.training.schedule import lr_factor

TINY = {"hidden_size": 16, "num_layers": 2, "embedding_size": 8, "dropout": 0.1}
STREAM = {**TINY, "seq_len": 16, "batch_size": 4, "eval_every": 3, "log_every": 2, "epochs": None}
WINDOW = {**TINY, "seq_len": 12, "batch_size": 32, "epochs": None, "eval_every": 3, "log_every": 2}


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    words = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "alice", "reads"]
    rng = torch.Generator().manual_seed(0)
    picks = torch.randint(0, len(words), (900,), generator=rng).tolist()
    path = tmp_path / "text.txt"
    path.write_text(" ".join(words[i] for i in picks) + "\n", encoding="utf-8")
    return path


def _metrics(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in m.items() if k != "elapsed_s"} for m in read_metrics(run_dir)]


def _record_losses(trainer, losses: list[float], stop_at: int | None = None) -> None:
    """Record every step's loss; ask to stop once ``stop_at`` steps are done, as Ctrl-C would."""
    original = trainer.train_step

    def train_step(x, y):
        loss = original(x, y)
        losses.append(float(loss))
        if stop_at is not None and trainer.progress.step + 1 >= stop_at:
            trainer.stop_requested.set()
        return loss

    trainer.train_step = train_step


@pytest.mark.parametrize(("preset", "settings"), [("default", STREAM), ("tutorial", WINDOW)])
def test_resume_gives_the_same_losses_as_an_uninterrupted_run(tmp_path, text_file, preset, settings):
    settings = {**settings, "max_steps": 14}
    if preset == "tutorial":
        settings["val_fraction"] = 0.1  # so eval lines carry a held-out loss to compare too
    whole = api.start_run([text_file], tmp_path / "whole", preset=preset, overrides=settings,
                          progress_bar=False)
    losses_whole: list[float] = []
    _record_losses(whole, losses_whole)
    whole.fit()

    first = api.start_run([text_file], tmp_path / "split", preset=preset, overrides=settings,
                          progress_bar=False)
    losses_split: list[float] = []
    _record_losses(first, losses_split, stop_at=7)
    assert first.fit().stop_reason == "interrupted"
    assert read_meta(tmp_path / "split" / runs.LAST).progress.step == 7
    resumed = api.resume_run(tmp_path / "split", progress_bar=False)
    _record_losses(resumed, losses_split)
    assert resumed.fit().stop_reason == "max_steps"

    assert len(losses_whole) == len(losses_split) == 14
    assert losses_whole == pytest.approx(losses_split, abs=1e-6)
    lines_whole = _metrics(tmp_path / "whole")
    lines_split = [m for m in _metrics(tmp_path / "split") if m["step"] != 7]  # the stop's own report
    assert [m["step"] for m in lines_whole] == [m["step"] for m in lines_split]
    for a, b in zip(lines_whole, lines_split, strict=True):
        for key in ("val_loss", "epoch_train_loss"):
            assert a.get(key) == pytest.approx(b.get(key), abs=1e-6), (a["step"], key)
    end_whole = load_checkpoint(tmp_path / "whole" / runs.LAST).model_state()
    end_split = load_checkpoint(tmp_path / "split" / runs.LAST).model_state()
    for name, tensor in end_whole.items():
        torch.testing.assert_close(tensor, end_split[name], rtol=0, atol=1e-6)


def test_stream_epoch_reads_the_text_with_state_carried(tmp_path, text_file):
    trainer = api.start_run([text_file], tmp_path / "run", overrides={**STREAM, "max_steps": 3},
                            progress_bar=False)
    seen = []
    original = trainer.model.forward

    def forward(ids, state=None):
        seen.append(state)
        return original(ids, state)

    trainer.model.forward = forward
    trainer.fit()
    # The first batch of the epoch starts from zeros; later ones receive the previous state.
    assert seen[0] is None or all(s.abs().sum() == 0 for s in seen[0])
    assert seen[1] is not None and any(s.abs().sum() > 0 for s in seen[1])
    assert not any(s.requires_grad for s in seen[1])  # detached: truncated BPTT


def test_best_checkpoints_keep_only_improvements_and_at_most_k(tmp_path, text_file):
    result = api.train([text_file], out_dir=tmp_path / "run",
                       **{**STREAM, "max_steps": 30, "eval_every": 2, "keep_best": 2, "lr": 1e-2})
    best = runs.best_checkpoints(result.run_dir)
    assert 1 <= len(best) <= 2
    values = [json.loads(line)["val_loss"] for line in (result.run_dir / "metrics.jsonl").open()]
    assert best[0][0] == pytest.approx(min(values))
    assert (result.run_dir / runs.LAST).is_file()
    assert runs.resolve_checkpoint(result.run_dir) == best[0][1]


def test_tutorial_checkpoints_on_epoch_training_loss_with_keras_names(tmp_path, text_file):
    result = api.train([text_file], out_dir=tmp_path / "run", preset="tutorial",
                       **{**TINY, "seq_len": 10, "batch_size": 256, "epochs": 2})
    assert result.stop_reason == "epochs"
    names = sorted(p.name for p in result.run_dir.glob("weights-improvement-*.safetensors"))
    assert names and names[0].startswith("weights-improvement-01-")
    epoch_losses = [m["epoch_train_loss"] for m in read_metrics(result.run_dir)
                    if "epoch_train_loss" in m]
    assert len(epoch_losses) == 2
    assert f"{epoch_losses[0]:.4f}" in names[0]


def test_stops_on_the_first_limit(tmp_path, text_file):
    result = api.train([text_file], out_dir=tmp_path / "a", **{**STREAM, "epochs": 1, "max_steps": 1000})
    assert result.stop_reason == "epochs"
    steps_per_epoch = result.progress.step
    result = api.train([text_file], out_dir=tmp_path / "b", **{**STREAM, "epochs": 5, "max_steps": 2})
    assert result.stop_reason == "max_steps" and result.progress.step == 2
    start = time.perf_counter()
    result = api.train([text_file], out_dir=tmp_path / "c", **{**STREAM, "time_budget": 0.5})
    assert result.stop_reason == "time_budget"
    assert time.perf_counter() - start < 30
    assert steps_per_epoch > 2


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    config = TrainConfig(lr_schedule="cosine", warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(config, 0, 0.0) == pytest.approx(0.1)
    assert lr_factor(config, 9, 0.0) == pytest.approx(1.0)
    assert lr_factor(config, 50, 0.5) == pytest.approx(0.55)
    assert lr_factor(config, 100, 1.0) == pytest.approx(0.1)
    assert lr_factor(TrainConfig(lr_schedule="constant"), 5, 0.9) == 1.0


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path, text_file):
    trainer = api.start_run([text_file], tmp_path / "run", overrides={**STREAM, "max_steps": 20},
                            progress_bar=False)
    original = trainer.train_step

    def poisoned(x, y):
        loss = original(x, y)
        if trainer.progress.step >= 5:
            with torch.no_grad():
                for p in trainer.model.parameters():
                    p.fill_(float("nan"))
        return loss

    trainer.train_step = poisoned
    with pytest.raises(TrainingDivergedError, match="nan"):
        trainer.fit()
    last = load_checkpoint(tmp_path / "run" / runs.LAST)
    assert last.meta.progress.step <= 6
    assert all(torch.isfinite(t).all() for t in last.model_state().values())


def test_existing_run_is_never_overwritten(tmp_path, text_file):
    api.train([text_file], out_dir=tmp_path / "run", **{**STREAM, "max_steps": 2})
    before = (tmp_path / "run" / runs.LAST).read_bytes()
    with pytest.raises(CheckpointError, match="already holds a run"):
        api.train([text_file], out_dir=tmp_path / "run", **{**STREAM, "max_steps": 2})
    assert (tmp_path / "run" / runs.LAST).read_bytes() == before


def test_resume_refuses_to_change_the_recipe(tmp_path, text_file):
    api.train([text_file], out_dir=tmp_path / "run", **{**STREAM, "max_steps": 2})
    with pytest.raises(ConfigError, match="hidden_size"):
        api.resume_run(tmp_path / "run", overrides={"hidden_size": 32})


def test_resume_detects_a_changed_data_folder(tmp_path, text_file):
    api.train([text_file], out_dir=tmp_path / "run", **{**STREAM, "max_steps": 2})
    meta_path = tmp_path / "run" / "data" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="other data"):
        api.resume_run(tmp_path / "run")


def test_a_failed_start_leaves_no_half_made_run(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("too short", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"too short|shorter"):
        api.train([short], out_dir=tmp_path / "run", **STREAM)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_saves_last_and_exits_zero_with_how_to_resume(tmp_path, text_file):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "charlstm", "train", str(text_file), "--out", str(run_dir),
           "--hidden-size", "16", "--num-layers", "1", "--seq-len", "16", "--batch-size", "4",
           "--no-progress", "--eval-every", "0"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 60
    while not (run_dir / "config.json").exists() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # let it take some steps
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "charlstm train --resume" in stderr
    assert read_meta(run_dir / runs.LAST).progress.step > 0


def test_sample_every_logs_samples_at_several_temperatures_into_the_run_log(tmp_path, text_file):
    result = api.train([text_file], out_dir=tmp_path / "run",
                       **{**STREAM, "max_steps": 4, "sample_every": 2, "sample_length": 30})
    log_text = (result.run_dir / "train.log").read_text(encoding="utf-8")
    for step in (2, 4):
        for temperature in ("0.2", "0.5", "1.0"):
            assert f"sample at step {step}, temperature {temperature}" in log_text
    assert "val_loss" in log_text  # the evaluations are in the same log


def test_sampling_during_training_does_not_change_the_training(tmp_path, text_file):
    settings = {**STREAM, "max_steps": 6, "dropout": 0.3}
    plain = api.train([text_file], out_dir=tmp_path / "plain", **settings)
    sampled = api.train([text_file], out_dir=tmp_path / "sampled", **settings, sample_every=2,
                        sample_length=10)
    a = load_checkpoint(plain.run_dir / runs.LAST).model_state()
    b = load_checkpoint(sampled.run_dir / runs.LAST).model_state()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)


@pytest.mark.skipif(not runtime.bf16_lstm_runs("cpu"), reason="this CPU cannot run an LSTM in bfloat16")
def test_bf16_autocast_trains_with_fp32_weights(tmp_path, text_file):
    result = api.train([text_file], out_dir=tmp_path / "run",
                       **{**STREAM, "max_steps": 6, "precision": "bf16", "lr": 1e-2})
    last = load_checkpoint(result.run_dir / runs.LAST)
    assert all(t.dtype == torch.float32 for t in last.model_state().values())
    losses = [m["train_loss"] for m in read_metrics(result.run_dir)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_bf16_where_the_lstm_cannot_run_it_is_a_clear_error_and_leaves_no_folder(tmp_path, text_file,
                                                                                  monkeypatch):
    monkeypatch.setattr(runtime, "bf16_lstm_runs", lambda device: False)
    with pytest.raises(ConfigError, match="--precision fp32"):
        api.train([text_file], out_dir=tmp_path / "run", **{**STREAM, "max_steps": 2, "precision": "bf16"})
    assert not (tmp_path / "run").exists()


def test_the_bf16_probe_agrees_with_a_real_bf16_step():
    lstm = torch.nn.LSTM(8, 8)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            lstm(torch.randn(3, 2, 8))
        runs_here = True
    except RuntimeError:
        runs_here = False
    assert runtime.bf16_lstm_runs("cpu") is runs_here


def test_evaluations_score_the_same_capped_prefix_and_record_it(tmp_path):
    text = write_text(tmp_path / "t.txt", words=2000)
    run = train_stream_run(tmp_path / "run", text, eval_max_chars=600, max_steps=7)
    val = open_prepared(runs.data_dir(run)).split("val")
    assert len(val) > 900  # the cap, not the split, decides what is scored
    lines = [m for m in read_metrics(run) if "val_loss" in m]
    assert len(lines) >= 2
    assert {m["val_characters"] for m in lines} == {600}
    # The same rows every time: the first 600 predictions of the split, as evaluate_stream scores them.
    model = load_model(run, which="last").model
    assert lines[-1]["val_loss"] == pytest.approx(
        evaluate_stream(model, val[:601], device=torch.device("cpu")).loss, rel=1e-6)


def test_eval_max_chars_zero_scores_the_whole_split(tmp_path):
    text = write_text(tmp_path / "t.txt", words=2000)
    run = train_stream_run(tmp_path / "run", text, eval_max_chars=0, max_steps=3)
    val = open_prepared(runs.data_dir(run)).split("val")
    [line] = [m for m in read_metrics(run) if "val_loss" in m]
    # Rows of equal length: at most rows - 1 trailing characters are left over.
    assert len(val) - 1 - EVAL_ROWS < line["val_characters"] <= len(val) - 1


def test_a_finite_but_overflowing_loss_is_divergence(tmp_path):
    trainer = api.start_run([write_text(tmp_path / "t.txt")], tmp_path / "run", progress_bar=False,
                            overrides={**TINY_STREAM, "max_steps": 2})
    with pytest.raises(TrainingDivergedError):
        trainer.reporter.check_finite(800.0)
    trainer.reporter.check_finite(30.0)  # high, but a model can be there (new characters start at ~30)


def _fit_within(trainer, seconds: float):
    """``trainer.fit()``, failing (not hanging the suite) when it does not end in ``seconds``."""
    import threading

    result = {}
    thread = threading.Thread(target=lambda: result.update(r=trainer.fit()), daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        trainer.stop_requested.set()
        pytest.fail(f"training did not end within {seconds} s")
    return result["r"]


def test_resume_from_a_checkpoint_written_at_an_epochs_end_goes_on_like_an_uninterrupted_run(
        tmp_path, text_file):
    # Evaluations at epoch ends only: the best checkpoint holds an epoch with every batch read.
    settings = {**STREAM, "eval_every": 0, "epochs": 3, "lr": 1e-2}
    whole = api.start_run([text_file], tmp_path / "whole", overrides=settings, progress_bar=False)
    losses_whole: list[float] = []
    _record_losses(whole, losses_whole)
    assert whole.fit().stop_reason == "epochs"

    first = api.start_run([text_file], tmp_path / "split", overrides=settings, progress_bar=False)
    per_epoch = len(first.batches)
    _record_losses(first, [], stop_at=per_epoch)  # stopped right after the first epoch's evaluation
    first.fit()
    (tmp_path / "split" / runs.LAST).unlink()  # a kill between the best checkpoint and last
    best = read_meta(runs.resume_point(tmp_path / "split")).progress
    assert (best.epoch, best.batch) == (0, per_epoch)  # the epoch's end, as that evaluation saw it
    resumed = api.resume_run(tmp_path / "split", progress_bar=False)
    losses_split: list[float] = []
    _record_losses(resumed, losses_split)
    assert _fit_within(resumed, 60).stop_reason == "epochs"
    assert len(losses_split) == 2 * per_epoch == len(losses_whole) - per_epoch
    assert losses_split == pytest.approx(losses_whole[per_epoch:], abs=1e-6)


def test_resume_at_an_epochs_end_stops_at_once_when_its_epochs_are_done(tmp_path, text_file):
    api.train([text_file], out_dir=tmp_path / "run", **{**STREAM, "eval_every": 0, "epochs": 1})
    (tmp_path / "run" / runs.LAST).unlink()
    step = read_meta(runs.resume_point(tmp_path / "run")).progress.step
    resumed = api.resume_run(tmp_path / "run", overrides={"epochs": 1, "time_budget": 5},
                             progress_bar=False)
    result = _fit_within(resumed, 60)
    assert (result.stop_reason, result.progress.step) == ("epochs", step)
