"""training/tensorboard.py: the curves and samples a run writes to RUN/tensorboard/, and resume."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from _runs import TINY_STREAM, invoke, train_stream_run, write_text
from charlstm.errors import ConfigError
from charlstm.generation.sampling import SAMPLE_TEMPERATURES
from charlstm.runs.metrics import read_metrics
from charlstm.training import session as api
from charlstm.training.tensorboard import TENSORBOARD_DIR

# Log points at 2, 3 (an evaluation), 5 and 6 (an evaluation, the last step); samples at 3 and 6.
SETTINGS = {"tensorboard": True, "log_every": 2, "eval_every": 3, "sample_every": 3, "sample_length": 12}
TRAIN_TAGS = ("loss/train", "bits_per_char/train", "lr", "chars_per_s")
VAL_TAGS = ("loss/val", "bits_per_char/val")


def read_events(run: Path) -> EventAccumulator:
    events = EventAccumulator(str(run / TENSORBOARD_DIR), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


def steps(events: EventAccumulator, tag: str) -> list[int]:
    return [e.step for e in events.Scalars(tag)]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A six-step stream run with TensorBoard on, shared read-only by the tests below."""
    root = tmp_path_factory.mktemp("tensorboard")
    return train_stream_run(root / "run", write_text(root / "text.txt"), **SETTINGS)


def test_scalars_are_written_at_log_points_and_evaluations(run):
    events = read_events(run)
    assert set(events.Tags()["scalars"]) == {*TRAIN_TAGS, *VAL_TAGS}
    for tag in TRAIN_TAGS:
        assert steps(events, tag) == [2, 3, 5, 6]
    metrics = read_metrics(run)
    for tag in VAL_TAGS:
        assert steps(events, tag) == [m["step"] for m in metrics] == [3, 6]
    val = [e.value for e in events.Scalars("loss/val")]
    assert val == pytest.approx([m["val_loss"] for m in metrics])
    bits = [e.value for e in events.Scalars("bits_per_char/val")]
    assert bits == pytest.approx([m["val_bits_per_char"] for m in metrics])
    assert all(e.value > 0 for tag in ("lr", "chars_per_s") for e in events.Scalars(tag))
    # Evaluations log the same training loss metrics.jsonl records.
    train = {e.step: e.value for e in events.Scalars("loss/train")}
    assert [train[m["step"]] for m in metrics] == pytest.approx([m["train_loss"] for m in metrics])


def test_samples_are_written_as_text(run):
    events = read_events(run)
    tags = {f"samples/temperature_{t:g}/text_summary" for t in SAMPLE_TEMPERATURES}
    assert tags <= set(events.Tags()["tensors"])
    for tag in tags:
        texts = events.Tensors(tag)
        assert [t.step for t in texts] == [3, 6]
        for t in texts:
            text = t.tensor_proto.string_val[0].decode("utf-8")
            # A Markdown code block: the prompt, then the sample_length characters after it.
            assert text.startswith("    ") and len(text.strip()) > 12


def test_resume_writes_no_step_twice(run, tmp_path):
    """A crash after the checkpoint at step 6 left curves up to step 8; resuming redoes 7 and 8."""
    resumed = shutil.copytree(run, tmp_path / "run")
    crashed = _write_orphans(resumed / TENSORBOARD_DIR, step=8)

    api.train(resume=resumed, max_steps=10)

    events = read_events(resumed)
    for tag in TRAIN_TAGS:
        assert steps(events, tag) == [2, 3, 5, 6, 8, 9]  # 10: the end, not a log point
    for tag in VAL_TAGS:
        assert steps(events, tag) == [3, 6, 9, 10]  # the orphan at 8 is gone
    assert all(e.value != crashed for e in events.Scalars("loss/train"))
    texts = events.Tensors("samples/temperature_1/text_summary")
    assert [t.step for t in texts] == [3, 6, 9]


def _write_orphans(folder: Path, *, step: int) -> float:
    """Events a run wrote after its last checkpoint before it died; the value they hold."""
    from torch.utils.tensorboard import SummaryWriter

    value = 99.0
    with SummaryWriter(str(folder / "crashed")) as writer:
        writer.add_scalar("loss/train", value, step)
        writer.add_scalar("loss/val", value, step)  # a tag the resumed run writes at no step 8
    (written,) = (folder / "crashed").iterdir()
    # Named to sort before the resumed run's file, as an earlier invocation's would.
    written.rename(folder / "events.out.tfevents.0000000001.crashed")
    (folder / "crashed").rmdir()
    return value


def test_tensorboard_is_off_by_default(tmp_path):
    text = write_text(tmp_path / "text.txt")
    result = invoke("train", text, "--out", tmp_path / "run", "--preset", "default", "--max-steps", "2",
                    "--hidden-size", "16", "--num-layers", "1", "--seq-len", "16", "--batch-size", "4",
                    "--no-progress")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "last.safetensors").is_file()
    assert not (tmp_path / "run" / TENSORBOARD_DIR).exists()


def test_a_missing_tensorboard_package_is_a_clear_error_at_start(tmp_path, monkeypatch):
    # None in sys.modules makes ``import torch.utils.tensorboard`` fail, as without the package.
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    text = write_text(tmp_path / "text.txt")
    with pytest.raises(ConfigError, match=r"pip install 'charlstm\[tensorboard\]'"):
        api.start_run([text], tmp_path / "run", preset="default",
                      overrides={**TINY_STREAM, "max_steps": 2, "tensorboard": True}, progress_bar=False)
    assert not (tmp_path / "run").exists()

    result = invoke("train", text, "--out", tmp_path / "run", "--preset", "default", "--max-steps", "2",
                    "--seq-len", "16", "--batch-size", "4", "--tensorboard", "--no-progress")
    assert result.exit_code == 2, result.output
    assert "prepared" not in result.stderr  # refused before any work
    errors = [line for line in result.stderr.splitlines() if line.startswith("charlstm: error: ")]
    assert errors == ["charlstm: error: tensorboard is set but the tensorboard package is not installed: "
                      "pip install 'charlstm[tensorboard]'"]
    assert not (tmp_path / "run").exists()
