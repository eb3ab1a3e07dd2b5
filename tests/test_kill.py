"""Kill -9 at random moments, writes included, then carry on: no stuck folder, no orphan, no bad line.

Each round starts ``charlstm train`` in its own process on a tiny model that evaluates and
checkpoints at every step (so most of its time is spent writing), kills it with SIGKILL after
a random delay, and carries on the way the error messages say: ``--resume``, or ``--out
--overwrite`` for a run that died before it had settings or a checkpoint.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _runs import write_text
from charlstm.runs.checkpoint import read_meta
from charlstm.runs.folder import LAST, best_checkpoints
from charlstm.runs.manifest import read_manifest
from charlstm.runs.metrics import METRICS_FILE, read_metrics

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")

STEPS = 10**6  # runs until killed
TINY = ["--preset", "default", "--hidden-size", "8", "--num-layers", "1", "--embedding-size", "4",
        "--seq-len", "8", "--batch-size", "2", "--eval-every", "1", "--log-every", "1", "--keep-best", "2",
        "--no-progress"]


def _charlstm(*args: object) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "charlstm", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _next_attempt(text: Path, run: Path, steps: int = STEPS) -> list[object]:
    """What the messages tell a user to run after a crash."""
    if (run / LAST).is_file() or (run / "config.json").is_file():
        return ["train", "--resume", run, "--max-steps", steps, "--no-progress"]
    if run.exists():
        return ["train", text, "--out", run, "--overwrite", "--max-steps", steps, *TINY]
    return ["train", text, "--out", run, "--max-steps", steps, *TINY]


def _metrics_size(run: Path) -> int:
    path = run / METRICS_FILE
    return path.stat().st_size if path.is_file() else 0


def _wait_for_new_metrics(run: Path, size: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while _metrics_size(run) <= size:
        assert proc.poll() is None, "training ended before it was killed"
        assert time.monotonic() < deadline, "training logged nothing in two minutes"
        time.sleep(0.05)


def test_kills_at_random_moments_leave_a_run_that_always_carries_on(tmp_path):
    text = write_text(tmp_path / "t.txt", words=800)
    run = tmp_path / "run"
    rng = random.Random(1234)
    states = set()
    for round_ in range(8):
        states.add("steps" if (run / LAST).is_file() else "no checkpoint" if run.exists() else "nothing")
        logged = _metrics_size(run)
        proc = _charlstm(*_next_attempt(text, run))
        if round_ % 2:
            # Every other kill lands once this attempt trains, however slow the machine's start-up.
            _wait_for_new_metrics(run, logged, proc)
            time.sleep(rng.uniform(0.0, 0.5))
        else:
            time.sleep(rng.uniform(0.5, 3.5))  # start-up (the torch import) takes about 1-2 s
        proc.send_signal(signal.SIGKILL)
        output, _ = proc.communicate()
        assert "Traceback" not in output, output
    assert "steps" in states  # the kills did land during training, not only at start-up
    done = read_meta(run / LAST).progress.step if (run / LAST).is_file() else 0
    final = _charlstm(*_next_attempt(text, run, steps=done + 5))
    output, _ = final.communicate(timeout=120)
    assert final.returncode == 0, output
    assert read_meta(run / LAST).progress.step == done + 5
    assert not list(run.glob(".tmp-*"))  # resumes removed what the kills left
    lines = (run / METRICS_FILE).read_text(encoding="utf-8").splitlines()
    assert len(read_metrics(run)) == len(lines) and lines  # every line is a whole JSON record
    own = {p.name for _, p in best_checkpoints(run)}
    assert own and own == set(read_manifest(run)) and len(own) <= 2
    assert {p.name for p in run.glob("*.safetensors")} == own | {LAST}


EPOCH_ENDS = [*TINY[:TINY.index("--eval-every")], "--eval-every", "0", "--log-every", "1", "--keep-best", "2",
              "--no-progress"]  # evaluations (and checkpoints) at epoch ends only


def test_kills_at_epoch_ends_and_a_missing_last_still_resume_within_the_budget(tmp_path):
    text = write_text(tmp_path / "t.txt", words=60)  # a few steps an epoch
    run = tmp_path / "run"
    first = _charlstm("train", text, "--out", run, "--epochs", 10**6, *EPOCH_ENDS)
    rng = random.Random(7)
    for round_ in range(3):
        if round_:
            first = _charlstm("train", "--resume", run, "--no-progress")
        # A metrics line is written by an epoch's last evaluation, just before its checkpoints.
        _wait_for_new_metrics(run, _metrics_size(run), first)
        time.sleep(rng.uniform(0.0, 0.05))
        first.send_signal(signal.SIGKILL)
        first.communicate()
    (run / LAST).unlink(missing_ok=True)  # as a kill between the best checkpoint and last leaves it
    assert any(read_meta(p).progress.batch > 0 for _, p in best_checkpoints(run))
    resumed = _charlstm("train", "--resume", run, "--time-budget", "3", "--no-progress")
    output, _ = resumed.communicate(timeout=90)  # it hung for ever, ignoring its time budget
    assert resumed.returncode == 0, output
    assert "time_budget" in output
    assert (run / LAST).is_file()
