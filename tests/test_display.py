"""Progress: a bar on a terminal whose total does not jump, plain lines (never \\r frames) elsewhere."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

from _runs import train_stream_run, write_text
from charlstm.training.display import ProgressBar, ProgressLines, progress_display
from charlstm.training.events import Callbacks, LogPoint, RunEnd, RunStart


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _point(step: int, time_left: float | None = None, step_s: float = 0.1) -> LogPoint:
    return LogPoint(step, 0, 2.0, step_s, 1000.0, time_left, 1e-3)


def test_a_bar_on_a_terminal_and_lines_anywhere_else():
    assert isinstance(progress_display(_Terminal()), ProgressBar)
    assert isinstance(progress_display(io.StringIO()), ProgressLines)


def test_under_a_time_budget_the_bar_counts_seconds_and_its_total_never_moves():
    bar, callbacks = ProgressBar(), Callbacks()
    bar.subscribe(callbacks)
    callbacks.emit(RunStart(0, None, time_budget_s=300.0))
    totals = []
    # The speed changes a lot: a step total estimated from it would jump (3997 -> 3614 -> 3933).
    for step, step_s in ((25, 0.075), (50, 0.083), (75, 0.076), (100, 0.2)):
        callbacks.emit(_point(step, time_left=300.0 - step * step_s, step_s=step_s))
        totals.append(bar.bar.total)
    assert totals == [300] * 4
    callbacks.emit(RunEnd(100, "interrupted"))


def test_plain_lines_come_at_most_every_interval(caplog):
    now = [0.0]
    lines, callbacks = ProgressLines(every_s=30.0, clock=lambda: now[0]), Callbacks()
    lines.subscribe(callbacks)
    callbacks.emit(RunStart(0, 400))
    with caplog.at_level(logging.INFO, logger="charlstm.training.display"):
        for step in range(25, 401, 25):
            now[0] += 7.0  # 25 steps every 7 s: a line every fifth log point
            callbacks.emit(_point(step, time_left=100.0))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3 and messages[0].startswith("step 125/400, epoch 1: loss 2.0000")
    assert "1m40s left" in messages[0] and not any("\r" in m for m in messages)


def test_a_training_run_written_to_a_file_holds_no_carriage_return(tmp_path):
    text, out = write_text(tmp_path / "t.txt"), tmp_path / "train.out"
    args = [sys.executable, "-m", "charlstm", "train", text, "--out", tmp_path / "run", "--max-steps", "30",
            "--hidden-size", "8", "--num-layers", "1", "--eval-every", "10", "--log-every", "1"]
    with open(out, "wb") as f:  # not a terminal, as with nohup or > train.log 2>&1
        result = subprocess.run([str(a) for a in args], stdout=f, stderr=subprocess.STDOUT, timeout=300,
                                env={**os.environ, "COLUMNS": "80"})
    written = Path(out).read_bytes()
    assert result.returncode == 0, written.decode()
    assert b"\r" not in written and b"trained 30 steps" in written


def test_scoring_with_dynamic_evaluation_to_a_pipe_holds_no_carriage_return(tmp_path):
    run = train_stream_run(tmp_path / "run", write_text(tmp_path / "t.txt"))
    result = subprocess.run([sys.executable, "-m", "charlstm", "eval", str(run), "--dynamic"],
                            capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode()
    assert b"\r" not in result.stdout + result.stderr
