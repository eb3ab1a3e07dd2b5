"""The auto preset's plan: explicit settings win, the limit sets the size, the corpus the dropout."""

from __future__ import annotations

import json

import pytest
import torch

from _runs import write_text
from charlstm.config.model import ModelConfig
from charlstm.config.train import TrainConfig
from charlstm.training import session as api
from charlstm.training import sizing

CPU = torch.device("cpu")
MODEL = ModelConfig(vocab_size=60)


def _plan(monkeypatch, *, speed: float = 10_000.0, given=(), train_chars=1_000_000, rows_speed=None,
          **train):
    """The plan with a fake probe: bf16 3x fp32, and ``rows_speed`` (rows -> factor) by batch width."""
    calls = []

    def fake_probe(model, config, device, seconds=sizing.PROBE_SECONDS):
        calls.append((model.num_layers, model.hidden_size, str(config.precision)))
        factor = (rows_speed or {}).get(config.batch_size, 1.0)
        return speed * factor * (3.0 if config.precision == "bf16" else 1.0)

    monkeypatch.setattr(sizing, "probe_chars_per_s", fake_probe)
    monkeypatch.setattr(sizing, "_has_fast_bf16", lambda device: True)
    plan = sizing.plan_run(MODEL, TrainConfig(**train), given=set(given), train_chars=train_chars, device=CPU)
    return plan, calls


def test_more_budget_never_chooses_a_smaller_model(monkeypatch):
    sizes = [_plan(monkeypatch, time_budget=t)[0].chosen for t in (30, 300, 3000, 30000)]
    params = [sizing._params(sizing._sized(MODEL, (c["num_layers"], c["hidden_size"]))) for c in sizes]
    assert params == sorted(params) and params[0] < params[-1]


def test_planned_characters_follow_the_probe_and_the_flops(monkeypatch):
    plan, calls = _plan(monkeypatch, time_budget=300)
    assert plan.limit == "time_budget" and plan.chosen["precision"] == "bf16"  # 3x faster in the fake
    chosen = sizing._sized(MODEL, (plan.chosen["num_layers"], plan.chosen["hidden_size"]))
    ratio = sizing.flops_per_char(sizing._sized(MODEL, sizing.REFERENCE)) / sizing.flops_per_char(chosen)
    assert plan.planned_chars == pytest.approx(30_000 * ratio * 300, rel=1e-6)
    assert plan.planned_epochs == pytest.approx(plan.planned_chars / 1_000_000, rel=1e-3)
    assert sorted(calls) == [(2, 512, "bf16")] * 2 + [(2, 512, "fp32")]  # precisions, then 16 rows in bf16


def test_the_narrowest_batch_that_keeps_the_speed_is_taken(monkeypatch):
    plan, _ = _plan(monkeypatch, time_budget=300, batch_size=64, seq_len=64)  # every width as fast
    assert plan.chosen["batch_size"] == min(sizing.WIDTHS)
    assert plan.probe_rows_chars_per_s == {rows: 30_000 for rows in (*sizing.WIDTHS, 64)}
    # Evaluations stay as many characters apart as the preset's 200 steps of 64 x 64.
    assert plan.chosen["eval_every"] * plan.chosen["batch_size"] * 64 == sizing.EVAL_CHARS


def test_a_width_that_loses_speed_is_not_taken(monkeypatch):
    slow_narrow = {16: 0.5, 32: 0.85}  # wide steps run faster, as bf16 matrix units do
    plan, _ = _plan(monkeypatch, time_budget=300, batch_size=64, seq_len=64, rows_speed=slow_narrow)
    assert plan.chosen["batch_size"] == 32
    wide = _plan(monkeypatch, time_budget=300, batch_size=64, seq_len=64, rows_speed={16: 0.5, 32: 0.7})[0]
    assert wide.chosen["batch_size"] == 64 and wide.chosen["eval_every"] == 200
    chosen = sizing._sized(MODEL, (plan.chosen["num_layers"], plan.chosen["hidden_size"]))
    ratio = sizing.flops_per_char(sizing._sized(MODEL, sizing.REFERENCE)) / sizing.flops_per_char(chosen)
    assert plan.planned_chars == pytest.approx(30_000 * 0.85 * ratio * 300, rel=1e-6)  # the width's speed


def test_a_given_batch_or_a_step_limit_is_not_probed_for_width(monkeypatch):
    plan, calls = _plan(monkeypatch, time_budget=300, batch_size=64, given={"batch_size"})
    assert "batch_size" not in plan.chosen and "eval_every" not in plan.chosen and len(calls) == 2
    plan, _ = _plan(monkeypatch, time_budget=300, batch_size=64, seq_len=64, eval_every=7,
                    given={"eval_every"})
    assert plan.chosen["batch_size"] == 16 and "eval_every" not in plan.chosen


def test_a_step_limit_needs_no_probe(monkeypatch):
    plan, calls = _plan(monkeypatch, max_steps=100, time_budget=300)
    assert calls == [] and plan.limit == "max_steps"
    assert plan.planned_chars == 100 * 32 * 128 and "precision" in plan.chosen


def test_explicit_settings_are_never_overridden(monkeypatch):
    given = {"num_layers", "hidden_size", "dropout", "weight_drop", "precision", "batch_size", "epochs"}
    plan, calls = _plan(monkeypatch, given=given, time_budget=300, precision="fp32")
    assert plan.chosen == {}
    assert calls == [(2, 512, "fp32")]  # the given size and precision are what is timed


def test_the_more_epochs_the_more_dropout(monkeypatch):
    small = _plan(monkeypatch, time_budget=300, train_chars=100_000)[0]
    large = _plan(monkeypatch, time_budget=300, train_chars=100_000_000)[0]
    assert small.planned_epochs > large.planned_epochs
    assert small.chosen["dropout"] >= large.chosen["dropout"]
    assert small.chosen["weight_drop"] > large.chosen["weight_drop"]


@pytest.mark.parametrize(("epochs", "dropout", "weight_drop"), [
    (1, 0.0, 0.0), (3, 0.0, 0.0), (10, 0.1, 0.0), (20, 0.3, 0.25), (40, 0.5, 0.5), (400, 0.5, 0.5)])
def test_regularisation_by_epochs(epochs, dropout, weight_drop):
    assert sizing.regularisation_for(epochs) == {"dropout": dropout, "weight_drop": weight_drop}


def test_a_time_budget_lifts_the_default_epoch_cap(monkeypatch):
    assert _plan(monkeypatch, time_budget=300)[0].chosen["epochs"] is None
    assert "epochs" not in _plan(monkeypatch, time_budget=300, epochs=3, given={"epochs"})[0].chosen


def test_a_short_text_gets_fewer_rows(monkeypatch):
    plan, _ = _plan(monkeypatch, max_steps=10, train_chars=20_000)
    assert plan.chosen["batch_size"] == 20_000 // (128 * sizing.MIN_BATCHES)
    assert _plan(monkeypatch, max_steps=10, train_chars=10**8)[0].chosen["batch_size"] == 32


def test_the_decision_takes_made_up_speeds_and_follows_its_numbered_steps(monkeypatch):
    def no_probe(*args, **kwargs):
        raise AssertionError("decide must time nothing")

    monkeypatch.setattr(sizing, "probe_chars_per_s", no_probe)
    monkeypatch.setattr(sizing, "_has_fast_bf16", no_probe)
    speeds = sizing.Speeds(by_precision={"fp32": 10_000.0, "bf16": 14_000.0},
                           by_rows={32: 14_000.0, 16: 12_000.0})
    plan = sizing.decide(MODEL, TrainConfig(time_budget=300), speeds, given=set(), train_chars=1_000_000)
    assert plan.chosen == {
        "precision": "bf16",  # 1: 14,000 >= 1.3 x 10,000
        "batch_size": 16, "eval_every": 400,  # 2: 12,000 keeps 80% of 14,000; 819,200 / (16 x 128)
        "epochs": None,  # 3: the budget alone is the limit
        # 4: 12,000 chars/s x 300 s = 3.6 M for the reference 2 x 512 (3.3 M parameters), and 5: the
        # next rung, 2 x 768, would read 1.6 M characters for its 7.3 M parameters.
        "num_layers": 2, "hidden_size": 512,
        "dropout": 0.02, "weight_drop": 0.0,  # 6: 3.6 epochs, just past the 3 of no dropout
    }
    assert (plan.limit, plan.planned_chars, plan.planned_epochs) == ("time_budget", 3_600_000, 3.6)
    assert plan.probe_chars_per_s == {"fp32": 10_000, "bf16": 14_000}
    # Speeds the run cannot use are ignored: all of them under a step limit, widths for a given batch.
    steps = sizing.decide(MODEL, TrainConfig(time_budget=300, max_steps=10), speeds, given=set(),
                          train_chars=1_000_000)
    assert steps.chosen["precision"] == "fp32" and steps.chosen["batch_size"] == 32
    assert steps.probe_chars_per_s == {} and steps.probe_rows_chars_per_s == {}
    given = sizing.decide(MODEL, TrainConfig(time_budget=300, batch_size=32), speeds, given={"batch_size"},
                          train_chars=1_000_000)
    assert given.probe_rows_chars_per_s == {} and given.planned_chars == 14_000 * 300  # bf16's speed


def test_probe_measures_and_leaves_the_random_state_alone():
    before = torch.get_rng_state()
    speed = sizing.probe_chars_per_s(ModelConfig(vocab_size=9, hidden_size=8, num_layers=1),
                                     TrainConfig(batch_size=2, seq_len=8), CPU, seconds=0.05)
    assert speed > 0 and torch.equal(before, torch.get_rng_state())


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


def test_named_presets_are_not_sized(tmp_path):
    text = write_text(tmp_path / "t.txt")
    api.start_run([text], tmp_path / "run", preset="default",
                  overrides={"max_steps": 1, "batch_size": 2, "seq_len": 8}, progress_bar=False)
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert "sizing" not in record and record["model"]["hidden_size"] == 512
