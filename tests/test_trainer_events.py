"""training/events.py and the trainer's parts: what observers hear, in order, and seeding as its own step."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from _runs import TINY_STREAM, write_text
from charlstm import presets
from charlstm.data.vocab import Vocab
from charlstm.data.writer import write_prepared
from charlstm.runs import folder as runs
from charlstm.runs.metrics import read_metrics
from charlstm.training import session as api
from charlstm.training.events import (
    CheckpointSaved,
    LogPoint,
    ReportEnd,
    ReportStart,
    RunEnd,
    RunStart,
    StepEnd,
)
from charlstm.training.trainer import Trainer

EVENTS = (RunStart, StepEnd, LogPoint, ReportStart, ReportEnd, CheckpointSaved, RunEnd)


@pytest.fixture
def text(tmp_path: Path) -> Path:
    return write_text(tmp_path / "text.txt", words=800)


def test_observers_hear_every_step_evaluation_and_checkpoint_in_order(tmp_path, text):
    trainer = api.start_run([text], tmp_path / "run", overrides={**TINY_STREAM, "max_steps": 7,
                                                                 "eval_every": 3, "log_every": 2},
                            progress_bar=False)
    heard: list[object] = []
    for kind in EVENTS:
        trainer.callbacks.on(kind, heard.append)
    result = trainer.fit()

    assert isinstance(heard[0], RunStart) and heard[0].step == 0 and heard[0].total_steps == 7
    assert isinstance(heard[-1], RunEnd) and heard[-1].reason == result.stop_reason == "max_steps"
    steps = [e for e in heard if isinstance(e, StepEnd)]
    assert [e.step for e in steps] == list(range(1, 8))
    assert all(e.inputs.shape == (4, 16) and e.targets.shape == (4, 16) and e.loss.ndim == 0 for e in steps)
    # Evaluations at steps 3 and 6 and at the end (7), each one a start/end pair.
    reports = [(type(e).__name__, e.step) for e in heard if isinstance(e, ReportStart | ReportEnd)]
    assert reports == [("ReportStart", 3), ("ReportEnd", 3), ("ReportStart", 6), ("ReportEnd", 6),
                       ("ReportStart", 7), ("ReportEnd", 7)]
    ends = [e for e in heard if isinstance(e, ReportEnd)]
    assert [e.record for e in ends] == read_metrics(tmp_path / "run")
    saved = [e for e in heard if isinstance(e, CheckpointSaved)]
    assert sum(not e.best for e in saved) == 3 and all(e.path.parent == tmp_path / "run" for e in saved)
    assert {e.path.name for e in saved if not e.best} == {runs.LAST}
    logs = [e for e in heard if isinstance(e, LogPoint)]
    assert [e.step for e in logs] == [2, 3, 5, 6] and all(e.chars_per_s > 0 for e in logs)  # 7: the end
    # Every step is heard before the evaluation that follows it.
    order = [e.step for e in heard if isinstance(e, StepEnd | ReportStart)]
    assert order == sorted(order)


def test_building_a_trainer_leaves_the_random_state_alone(tmp_path):
    """Seeding is the session's explicit step; a Trainer built twice gets whatever state it is given."""
    text = "the cat sat on the mat. " * 40
    vocab = Vocab.from_text(text)
    data = write_prepared(text, vocab, tmp_path / "data", val_fraction=0.1, test_fraction=0.0)
    preset = presets.PRESETS["default"]
    model_cfg = replace(preset.model, vocab_size=len(vocab), hidden_size=8, num_layers=1, embedding_size=4)
    train_cfg = replace(preset.train, seq_len=8, batch_size=2, device="cpu")
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = Trainer(tmp_path / "a", data, model_cfg, train_cfg, preset.corpus, progress_bar=False)
    torch.manual_seed(123)
    second = Trainer(tmp_path / "b", data, model_cfg, train_cfg, preset.corpus, progress_bar=False)
    assert torch.equal(first.model.head.weight, second.model.head.weight)  # the same state in, the same out
    torch.manual_seed(7)
    third = Trainer(tmp_path / "c", data, model_cfg, train_cfg, preset.corpus, progress_bar=False)
    assert not torch.equal(first.model.head.weight, third.model.head.weight)  # no reseeding inside
    torch.manual_seed(123)
    assert torch.equal(torch.get_rng_state(), before)


def test_a_session_seeds_so_the_same_seed_gives_the_same_start(tmp_path, text):
    settings = {**TINY_STREAM, "max_steps": 1}
    torch.manual_seed(1)
    a = api.start_run([text], tmp_path / "a", overrides=settings, progress_bar=False)
    torch.manual_seed(2)
    b = api.start_run([text], tmp_path / "b", overrides=settings, progress_bar=False)
    assert torch.equal(a.model.head.weight, b.model.head.weight)
    c = api.start_run([text], tmp_path / "c", overrides={**settings, "seed": 5}, progress_bar=False)
    assert not torch.equal(a.model.head.weight, c.model.head.weight)
