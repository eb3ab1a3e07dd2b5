"""The one sampling step (``Sampler``): when it filters, where the temperature acts, min-p's edges."""

from __future__ import annotations

import pytest
import torch

from charlstm.config.sample import SampleConfig
from charlstm.errors import ConfigError
from charlstm.generation.sampling import Sampler, draw_noise, race


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def kept(logits: list[float], **settings) -> set[int]:
    """The characters one row's filters keep (finite scores)."""
    scores = Sampler(SampleConfig(**settings)).scores(torch.tensor([logits]))[0]
    return set(scores.isfinite().nonzero().flatten().tolist())


def drawn(logits: list[float], draws: int = 3000, **settings) -> set[int]:
    """The characters drawn from one row over many independent draws of the full step."""
    sampler = Sampler(SampleConfig(**settings))
    rows = torch.tensor([logits]).expand(draws, -1)
    return set(sampler.next_ids(rows, sampler.noise(seeded(), 1, draws, len(logits))[0]).tolist())


@pytest.mark.parametrize(("settings", "filtered"), [
    ({}, False), ({"temperature": 0.5}, False), ({"top_k": 3}, True), ({"top_p": 0.9}, True),
    ({"min_p": 0.1}, True), ({"greedy": True, "top_k": 3, "min_p": 0.1}, False),
])
def test_a_step_filters_only_when_a_filter_is_on_and_it_is_not_greedy(settings, filtered):
    assert Sampler(SampleConfig(**settings)).filtered is filtered


@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
def test_unfiltered_the_logits_race_as_they_are_and_the_noise_carries_the_temperature(temperature):
    sampler = Sampler(SampleConfig(temperature=temperature))
    logits = torch.randn(2, 7)
    assert sampler.scores(logits) is logits  # no tensor op on the default path
    noise = sampler.noise(seeded(1), 4, 2, 7)
    assert torch.allclose(noise, temperature * draw_noise(seeded(1), 4, 2, 7))


def test_filtered_the_logits_are_divided_and_the_noise_is_left_alone():
    sampler = Sampler(SampleConfig(temperature=0.5, min_p=1e-9))
    logits = torch.randn(2, 7)
    assert torch.equal(sampler.noise(seeded(1), 4, 2, 7), draw_noise(seeded(1), 4, 2, 7))
    scores = sampler.scores(logits)
    assert torch.allclose(scores, (logits - logits.amax(dim=-1, keepdim=True)) / 0.5)


def test_the_race_with_zero_noise_is_greedy():
    scores = torch.randn(5, 9)
    assert torch.equal(race(scores, torch.zeros(5, 9)), scores.argmax(dim=-1))


@pytest.mark.parametrize(("min_p", "expected"), [
    (0.1, {0, 1, 2}),  # p >= 0.05 of probabilities 0.5, 0.3, 0.15, 0.049
    (0.5, {0, 1}),  # p >= 0.25
    (0.9, {0}),
])
def test_min_p_keeps_what_is_at_least_min_p_times_the_best(min_p, expected):
    logits = torch.tensor([0.5, 0.3, 0.15, 0.049]).log().tolist()
    assert kept(logits, min_p=min_p) == expected
    assert drawn(logits, min_p=min_p) == expected


def test_min_p_acts_after_the_temperature():
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log().tolist()
    # At T = 2 the ratios to the best are their square roots: 1, 0.77, 0.55, 0.32.
    assert kept(logits, min_p=0.5, temperature=2.0) == {0, 1, 2}
    assert kept(logits, min_p=0.5, temperature=0.5) == {0}  # squares: 1, 0.36, ...


def test_min_p_1_keeps_only_the_best_and_its_ties():
    assert kept([2.0, 1.9, 0.0, -3.0], min_p=1.0) == {0}
    assert kept([2.0, 0.0, 2.0, -3.0], min_p=1.0) == {0, 2}
    assert drawn([2.0, 0.0, 2.0, -3.0], min_p=1.0) == {0, 2}
    assert drawn([1.0, 3.0, 0.0], min_p=1.0, temperature=5.0) == {1}


def test_a_tiny_min_p_keeps_every_character():
    logits = (torch.randn(40, generator=seeded(3)) * 5).tolist()
    assert kept(logits, min_p=1e-30) == set(range(40))
    assert kept([0.0, -60.0, float("-inf")], min_p=1e-300) == {0, 1}  # only an impossible one goes


def test_min_p_composes_with_top_k_and_top_p():
    logits = torch.tensor([0.4, 0.3, 0.2, 0.1]).log().tolist()
    assert kept(logits, min_p=0.2, top_k=2) == {0, 1}  # top-k is the tighter
    assert kept(logits, min_p=0.6, top_p=0.95) == {0, 1}  # min-p is the tighter


@pytest.mark.parametrize("min_p", [0.0, -0.1, 1.5, float("nan")])
def test_min_p_outside_0_1_is_refused(min_p):
    with pytest.raises(ConfigError, match="min_p"):
        SampleConfig(min_p=min_p)


def test_the_repeat_penalty_hits_the_character_that_would_extend_a_long_repeat():
    from charlstm.generation.sampling import RepeatPenalty

    ids = [ord(c) for c in "xabcdefyabcde"]  # "abcde" said again: "f" would make it 6 long
    assert RepeatPenalty(1.0, 2.0, 3).penalties(ids) == {ord("f"): 1.0 * 2.0 ** (5 - 3)}
    assert RepeatPenalty(1.0, 2.0, 6).penalties(ids) == {}  # a repeat of 5 is allowed at 6
    logits = torch.zeros(2, 128)
    out = RepeatPenalty(1.0, 2.0, 3).apply(logits, [ids, [1, 2, 3]])
    assert out[0, ord("f")] == -4.0 and out[0].count_nonzero() == 1 and out[1].count_nonzero() == 0
    assert logits.count_nonzero() == 0  # the caller's logits are left as they were


def test_the_repeat_penalty_is_off_unless_set():
    from charlstm.config.sample import SampleConfig
    from charlstm.generation.sampling import Sampler

    assert Sampler(SampleConfig()).repeat is None and not Sampler(SampleConfig()).filtered
    assert Sampler(SampleConfig(dry_multiplier=0.8)).filtered
