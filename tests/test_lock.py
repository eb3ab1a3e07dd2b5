"""One process owns a run folder: a second training, resume or --overwrite is refused with the
holder named (exit 4), and a lock left by a dead process is taken over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _runs import invoke, train_stream_run, write_text
from charlstm.runs.lock import LOCK_FILE, RunInUseError, RunLock
from charlstm.runs.metrics import read_metrics
from charlstm.training import session as api

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and fork-free holders")

_HOLD = "import sys, time; from charlstm.runs.lock import RunLock; RunLock(sys.argv[1]).acquire(); " \
        "print('held', flush=True); time.sleep(600)"


def _holder(run: Path) -> subprocess.Popen:
    """Another process that takes the run's lock and keeps it until killed."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return train_stream_run(tmp_path / "run", write_text(tmp_path / "t.txt"), max_steps=4)


def test_a_second_lock_on_a_held_folder_is_refused_and_a_released_one_is_free(tmp_path):
    first = RunLock(tmp_path).acquire()
    with pytest.raises(RunInUseError, match=f"in use by process {os.getpid()}"):
        RunLock(tmp_path).acquire()
    first.release()
    with RunLock(tmp_path) as again:
        assert again.held


@pytest.mark.parametrize("command", ["resume", "overwrite", "library"])
def test_a_held_run_is_refused_with_its_holder_named_and_left_as_it_was(run, tmp_path, command):
    holder = _holder(run)
    lines = read_metrics(run)
    try:
        if command == "library":
            with pytest.raises(RunInUseError, match=f"process {holder.pid}"):
                api.resume_run(run, progress_bar=False)
        else:
            args = (["train", "--resume", run] if command == "resume" else
                    ["train", write_text(tmp_path / "u.txt"), "--out", run, "--overwrite"])
            result = invoke(*args, "--max-steps", "8", "--no-progress")
            assert result.exit_code == 4, result.output
            assert f"in use by process {holder.pid}" in result.output and "Traceback" not in result.output
    finally:
        holder.kill()
        holder.wait()
    assert read_metrics(run) == lines and (run / "config.json").is_file()


def test_a_lock_left_by_a_killed_process_is_taken_over(run):
    holder = _holder(run)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (run / LOCK_FILE).read_text(encoding="utf-8")  # the dead holder's name is still written
    assert invoke("train", "--resume", run, "--max-steps", "6", "--no-progress").exit_code == 0
    assert read_metrics(run)[-1]["step"] == 6


def test_a_new_run_started_beside_a_training_one_is_refused_and_deletes_nothing(tmp_path):
    text, run = write_text(tmp_path / "t.txt"), tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(
        [sys.executable, "-m", "charlstm", "train", text, "--out", run, "--max-steps", "100000",
         "--hidden-size", "8", "--num-layers", "1", "--seq-len", "8", "--batch-size", "2",
         "--eval-every", "5", "--no-progress"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not read_metrics(run):  # training, with a checkpoint
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        for again in (["--out", run], ["--out", run, "--overwrite"]):
            result = invoke("train", text, *again, "--max-steps", "1", "--no-progress")
            assert result.exit_code == 4 and f"process {first.pid}" in result.output, result.output
        result = invoke("train", "--resume", run, "--max-steps", "1", "--no-progress")
        assert result.exit_code == 4, result.output
        assert first.poll() is None and (run / "config.json").is_file() and (run / "data").is_dir()
    finally:
        first.send_signal(signal.SIGINT)  # stops at a step's end and saves
        first.wait(timeout=120)
    assert first.returncode == 0
    steps = [m["step"] for m in read_metrics(run)]
    assert steps == sorted(steps)  # one writer: no interleaved lines
