"""The auto preset's probes: what is timed, and how the timings steer the rule's plan."""

from __future__ import annotations

import pytest
import torch

from charlstm.config.model import ModelConfig
from charlstm.config.train import TrainConfig
from charlstm.training import probe, sizing

CPU = torch.device("cpu")
MODEL = ModelConfig(vocab_size=60)


def _plan(monkeypatch, *, speed: float = 10_000.0, given=(), train_chars=1_000_000, rows_speed=None,
          size_speed=None, **train):
    """The plan with a fake probe: the reference's ``speed``, bf16 3x fp32, other sizes by their FLOPs
    (times ``size_speed``'s factor, (layers, width) -> factor), ``rows_speed`` (rows -> factor) by width."""
    calls = []
    reference_flops = sizing.flops_per_char(sizing._sized(MODEL, sizing.REFERENCE))

    def fake_probe(model, config, device, seconds=probe.PROBE_SECONDS):
        calls.append((model.num_layers, model.hidden_size, str(config.precision)))
        size = (model.num_layers, model.hidden_size)
        factor = (rows_speed or {}).get(config.batch_size, 1.0) * (size_speed or {}).get(size, 1.0)
        scale = reference_flops / sizing.flops_per_char(model)
        return speed * factor * scale * (3.0 if config.precision == "bf16" else 1.0)

    monkeypatch.setattr(probe, "probe_variants", lambda model, configs, device, seconds=1.0:
                        [fake_probe(model, c, device) for c in configs])
    monkeypatch.setattr(probe, "_has_fast_bf16", lambda device: True)
    plan = probe.plan_run(MODEL, TrainConfig(**train), given=set(given), train_chars=train_chars, device=CPU)
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
    assert sorted(calls) == [(2, 512, "bf16")] * 3 + [(2, 512, "fp32")]  # precisions, then 32 and 16 rows


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
    given = {"num_layers", "hidden_size", "dropout", "weight_drop", "precision", "batch_size", "epochs",
             "weight_decay"}
    plan, calls = _plan(monkeypatch, given=given, time_budget=300, precision="fp32")
    assert plan.chosen == {}
    assert calls == [(2, 512, "fp32")]  # the given size and precision are what is timed


def test_the_more_epochs_the_more_dropout(monkeypatch):
    small = _plan(monkeypatch, time_budget=300, train_chars=100_000)[0]
    large = _plan(monkeypatch, time_budget=300, train_chars=100_000_000)[0]
    assert small.planned_epochs > large.planned_epochs
    assert small.chosen["dropout"] >= large.chosen["dropout"]
    assert small.chosen["weight_drop"] > large.chosen["weight_drop"]
    assert small.chosen["weight_decay"] > large.chosen["weight_decay"]


def test_a_time_budget_lifts_the_default_epoch_cap(monkeypatch):
    assert _plan(monkeypatch, time_budget=300)[0].chosen["epochs"] is None
    assert "epochs" not in _plan(monkeypatch, time_budget=300, epochs=3, given={"epochs"})[0].chosen


def test_a_short_text_gets_fewer_rows(monkeypatch):
    plan, _ = _plan(monkeypatch, max_steps=10, train_chars=20_000)
    assert plan.chosen["batch_size"] == 20_000 // (128 * sizing.MIN_BATCHES)
    assert _plan(monkeypatch, max_steps=10, train_chars=10**8)[0].chosen["batch_size"] == 32


def test_probe_measures_and_leaves_the_random_state_alone():
    before = torch.get_rng_state()
    speed = probe.probe_chars_per_s(ModelConfig(vocab_size=9, hidden_size=8, num_layers=1),
                                     TrainConfig(batch_size=2, seq_len=8), CPU, seconds=0.05)
    assert speed > 0 and torch.equal(before, torch.get_rng_state())


def test_a_pick_slower_than_its_flops_say_is_timed_and_stepped_down(monkeypatch):
    fast, calls = _plan(monkeypatch, time_budget=1800)  # 2 x 768 reads 24 M characters, 3.3 per parameter
    assert (fast.chosen["num_layers"], fast.chosen["hidden_size"]) == (2, 768)
    assert (2, 768, "bf16") in calls and list(fast.probe_sizes_chars_per_s) == ["2x768"]
    # Timed at a tenth of its FLOPs' speed it would read too little: the reference size is taken, and
    # its plan counts the reference's own speed.
    slow, calls = _plan(monkeypatch, time_budget=1800, size_speed={(2, 768): 0.1})
    assert (slow.chosen["num_layers"], slow.chosen["hidden_size"]) == sizing.REFERENCE
    assert slow.probe_sizes_chars_per_s == {"2x768": pytest.approx(fast.probe_sizes_chars_per_s["2x768"] / 10,
                                                                   abs=1)}
    assert slow.planned_chars == 30_000 * 1800 and calls.count((2, 768, "bf16")) == 1
    assert "2x768" in slow.describe()


def test_sizes_are_timed_only_under_a_time_budget(monkeypatch):
    plan, calls = _plan(monkeypatch, max_steps=10**6, time_budget=1800)
    assert calls == [] and plan.probe_sizes_chars_per_s == {}


def test_one_slow_step_does_not_move_the_probe():
    # The mean of these steps would read at half the speed: a machine's hiccup must not pick fp32.
    steady = probe.steady_chars_per_s([0.5, 0.5, 0.5], 1_000)
    assert steady == probe.steady_chars_per_s([0.5, 3.0, 0.5], 1_000) == pytest.approx(2_000)
    assert probe.steady_chars_per_s([0.5, 0.6, 0.7, 0.8], 1_000) == pytest.approx(1_000 / 0.65)


def test_the_probe_warms_up_then_times_at_least_three_steps(monkeypatch):
    timed = []
    monkeypatch.setattr(probe, "steady_chars_per_s", lambda times, chars: timed.append(times) or 1.0)
    probe.probe_chars_per_s(ModelConfig(vocab_size=9, hidden_size=8, num_layers=1),
                            TrainConfig(batch_size=2, seq_len=8), CPU, seconds=0.0)
    assert len(timed[0]) == probe.MIN_TIMED_STEPS and all(t > 0 for t in timed[0])


def test_variants_timed_in_turns_keep_their_ratio_on_a_drifting_machine():
    # The machine slows by 20% a step: timed one after another, the narrow batch (a fifth of the wide's
    # step) would read far slower than it is; in turns both see the same drift.
    clock = []

    def step_of(seconds: float):
        return lambda: clock.append(0) or seconds * 1.2 ** len(clock)

    wide, narrow = probe.time_in_turns([step_of(1.0), step_of(0.2)], seconds=0.0)
    assert len(wide) == len(narrow) >= probe.MIN_TIMED_STEPS
    ratio = probe.steady_chars_per_s(narrow, 16) / probe.steady_chars_per_s(wide, 64)
    assert ratio == pytest.approx(0.25 / 0.2 * 1.2 ** -1, rel=1e-9)  # one turn's drift, not six


def test_the_widths_are_timed_together_with_the_widest_again(monkeypatch):
    turns = []
    monkeypatch.setattr(probe, "probe_variants", lambda model, configs, device, seconds=1.0:
                        turns.append(configs) or [1e4] * len(configs))
    monkeypatch.setattr(probe, "_has_fast_bf16", lambda device: False)
    probe.probe_speeds(MODEL, TrainConfig(time_budget=300, batch_size=64), given=set(), train_chars=10**6,
                       device=CPU)
    assert [[c.batch_size for c in configs] for configs in turns] == [[64], [64, *sizing.WIDTHS]]
