"""The auto preset's rule: explicit settings win, the limit sets the size, the corpus the dropout."""

from __future__ import annotations

import json

import pytest
import torch

from _runs import write_text
from charlstm.config.model import ModelConfig
from charlstm.config.train import TrainConfig
from charlstm.training import probe, sizing
from charlstm.training import session as api

CPU = torch.device("cpu")
MODEL = ModelConfig(vocab_size=60)


@pytest.mark.parametrize(("epochs", "dropout", "weight_drop", "weight_decay"), [
    (1, 0.0, 0.0, 0.01), (3, 0.0, 0.0, 0.01), (10, 0.1, 0.0, 0.05), (15, 0.16, 0.06, 0.079),
    (20, 0.2, 0.1, 0.1), (40, 0.5, 0.5, 0.1), (400, 0.5, 0.5, 0.1)])
def test_regularisation_by_epochs(epochs, dropout, weight_drop, weight_decay):
    assert sizing.regularisation_for(epochs) == {"dropout": dropout, "weight_drop": weight_drop,
                                                 "weight_decay": weight_decay}


def test_the_decision_takes_made_up_speeds_and_follows_its_numbered_steps(monkeypatch):
    def no_probe(*args, **kwargs):
        raise AssertionError("decide must time nothing")

    monkeypatch.setattr(probe, "probe_chars_per_s", no_probe)
    monkeypatch.setattr(probe, "_has_fast_bf16", no_probe)
    speeds = sizing.Speeds(by_precision={"fp32": 10_000.0, "bf16": 14_000.0},
                           by_rows={32: 14_000.0, 16: 12_000.0})
    plan = sizing.decide(MODEL, TrainConfig(time_budget=600), speeds, given=set(), train_chars=1_000_000)
    assert plan.chosen == {
        "precision": "bf16",  # 1: 14,000 >= 1.3 x 10,000
        "batch_size": 16, "eval_every": 400,  # 2: 12,000 keeps 80% of 14,000; 819,200 / (16 x 128)
        "epochs": None,  # 3: the budget alone is the limit
        # 4: 12,000 chars/s x 600 s = 7.2 M for the reference 2 x 512 (3.3 M parameters: 2.2 a
        # parameter), and 5: the next rung, 2 x 768, would read 3.3 M for its 7.3 M parameters.
        "num_layers": 2, "hidden_size": 512,
        # 6: 7.2 epochs, log-linear from 0 at 3 to 0.1 at 10 (weight decay from 0.01 to 0.05)
        "dropout": 0.07, "weight_drop": 0.0, "weight_decay": 0.039,
    }
    assert (plan.limit, plan.planned_chars, plan.planned_epochs) == ("time_budget", 7_200_000, 7.2)
    assert plan.probe_chars_per_s == {"fp32": 10_000, "bf16": 14_000}
    # Speeds the run cannot use are ignored: all of them under a step limit, widths for a given batch.
    steps = sizing.decide(MODEL, TrainConfig(time_budget=300, max_steps=10), speeds, given=set(),
                          train_chars=1_000_000)
    assert steps.chosen["precision"] == "fp32" and steps.chosen["batch_size"] == 32
    assert steps.probe_chars_per_s == {} and steps.probe_rows_chars_per_s == {}
    given = sizing.decide(MODEL, TrainConfig(time_budget=600, batch_size=32), speeds, given={"batch_size"},
                          train_chars=1_000_000)
    assert given.probe_rows_chars_per_s == {} and given.planned_chars == 14_000 * 600  # bf16's speed


def test_auto_run_records_its_plan_and_builds_what_it_chose(tmp_path):
    text = write_text(tmp_path / "t.txt")
    settings = {"max_steps": 2, "batch_size": 2, "seq_len": 8, "embedding_size": 8}
    trainer = api.start_run([text], tmp_path / "run", overrides=settings, progress_bar=False)
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    chosen = record["sizing"]["chosen"]
    assert record["preset"] == "auto" and record["sizing"]["limit"] == "max_steps"
    assert (trainer.model.config.num_layers, trainer.model.config.hidden_size) == (
        chosen["num_layers"], chosen["hidden_size"]) == sizing.LADDER[0]  # 32 characters fit the smallest
    assert record["model"]["dropout"] == chosen["dropout"]
    assert record["train"]["weight_decay"] == chosen["weight_decay"] == trainer.config.weight_decay


def test_named_presets_are_not_sized(tmp_path):
    text = write_text(tmp_path / "t.txt")
    api.start_run([text], tmp_path / "run", preset="default",
                  overrides={"max_steps": 1, "batch_size": 2, "seq_len": 8}, progress_bar=False)
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert "sizing" not in record and record["model"]["hidden_size"] == 512



def test_a_timed_size_plans_with_its_own_speed():
    big, ref = sizing._sized(MODEL, (2, 768)), sizing._sized(MODEL, sizing.REFERENCE)
    plan = dict(reference=ref, train=TrainConfig(time_budget=100), speed=10_000.0, train_chars=10**9)
    scaled = sizing.planned_chars(big, **plan)[0]
    assert scaled == pytest.approx(10_000 * 100 * sizing.flops_per_char(ref) / sizing.flops_per_char(big))
    assert sizing.planned_chars(big, **plan, measured={"2x768": 1_000.0}) == (100_000.0, "time_budget")
    assert sizing.planned_chars(big, **plan, measured={"2x512": 1.0})[0] == scaled  # another size's
