"""generation/beam.py: beam search against exhaustive search, greedy, stops, items and the CLI."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch

from _runs import invoke, tiny_model, train_stream_run, train_window_run, write_text
from _serving import tiny_items_run
from charlstm.config.sample import SampleConfig
from charlstm.errors import ConfigError
from charlstm.generation.beam import beam_search, generate_beam
from charlstm.generation.generators import continuation_logprobs, generate_text
from charlstm.generation.items import generate_items, score_items
from charlstm.generation.sampling import RepeatPenalty
from charlstm.runs.loading import load_model


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    root = tmp_path_factory.mktemp("beam")
    return load_model(train_stream_run(root / "run", write_text(root / "t.txt")))


def total_logprob(model, prompt: list[int], continuation: tuple[int, ...]) -> float:
    """The continuation's log-probability, read naively in one forward pass."""
    ids = torch.tensor(prompt + list(continuation))
    with torch.no_grad():
        logits, _ = model(ids[None, :-1])
    logp = logits[0].float().log_softmax(-1).gather(-1, ids[1:, None])[:, 0]
    return logp[len(prompt) - 1 :].sum().item()


def test_a_beam_wide_enough_finds_the_exhaustive_searchs_best():
    model = tiny_model(4, scale=3.0)
    prompt = [0, 1, 2]
    every = list(itertools.product(range(4), repeat=3))  # 64 continuations of 3
    scores = {c: total_logprob(model, prompt, c) for c in every}
    best = max(every, key=scores.__getitem__)
    # Width 16 keeps every continuation of 2, so the third step sees all 64.
    found = beam_search(model, torch.tensor(prompt), 16, 3, best=5)
    assert found[0].ids == best
    assert found[0].logprob == pytest.approx(scores[best], abs=1e-4)
    ranked = sorted(every, key=scores.__getitem__, reverse=True)[:5]
    assert [h.ids for h in found] == ranked  # and the next best in order
    for h in found:
        assert h.logprob == pytest.approx(scores[h.ids], abs=1e-4) and not h.ended


def test_beam_1_is_greedy(loaded):
    greedy = generate_text(loaded, "the ", length=80, greedy=True)
    assert generate_text(loaded, "the ", length=80, beam=1) == greedy


def test_a_wider_beam_finds_a_continuation_at_least_as_likely(loaded):
    prompt = torch.as_tensor(loaded.vocab.encode("the "))
    means = []
    for width in (1, 4):
        text = generate_text(loaded, "the ", length=30, beam=width)[0]
        means.append(continuation_logprobs(loaded.model, prompt, [loaded.vocab.encode(text)])[0])
    assert means[1] >= means[0] - 1e-6


def test_a_continuation_ends_at_a_stop_sequence_which_is_left_out(loaded):
    greedy = generate_text(loaded, "the ", length=60, greedy=True)[0]
    stop = greedy[10:12]  # greedy text reaches it, so the width-1 search does
    _, found = generate_beam(loaded, "the ", SampleConfig(length=60, beam=1), stops=[stop])
    assert found[0].finish_reason == "stop" and found[0].text == greedy[: greedy.index(stop)]
    assert found[0].chars == len(found[0].text) + len(stop)
    # Its log-probability is of what was searched, the stop sequence included.
    prompt = loaded.vocab.encode("the ").tolist()
    searched = tuple(loaded.vocab.encode(found[0].text + stop).tolist())
    assert found[0].logprob == pytest.approx(total_logprob(loaded.model, prompt, searched), abs=1e-3)


def test_ended_and_running_continuations_are_ranked_by_mean_log_probability():
    model = tiny_model(5, scale=3.0)
    found = beam_search(model, torch.tensor([0, 1]), 6, 12, finished=lambda ids: ids[-1] == 4, best=6)
    assert [h.score for h in found] == sorted((h.score for h in found), reverse=True)
    for h in found:
        assert h.ended == (h.ids[-1] == 4) and (h.ended or len(h.ids) == 12)
        assert 4 not in h.ids[:-1]  # an ended one goes no further


def test_the_repetition_control_steers_the_search_off_its_loop(loaded):
    plain = generate_text(loaded, "the ", length=200, beam=2)[0]
    checked = generate_text(loaded, "the ", length=200, beam=2, dry_multiplier=2.0, dry_allowed_length=8)[0]

    def longest_repeat(text: str) -> int:
        return max((n for n in range(1, 60) if len({text[i:i + n] for i in range(len(text) - n + 1)})
                    < len(text) - n + 1), default=0)

    assert longest_repeat(plain) > 20 and longest_repeat(checked) < longest_repeat(plain)
    penalty = RepeatPenalty(2.0, 1.75, 8)
    assert penalty.penalties(loaded.vocab.encode(plain).tolist())  # the loop is one DRY penalises


@pytest.mark.parametrize("settings, message", [
    ({"top_k": 3}, "top_k"), ({"temperature": 0.5}, "temperature"), ({"greedy": True}, "greedy"),
    ({"best_of": 2}, "best_of"), ({"num_samples": 3}, "num_samples 3"), ({"beam": 0}, "beam"),
    ({"beam": 65}, "beam"),
])
def test_beam_refuses_sampling_settings_and_more_continuations_than_its_width(settings, message):
    with pytest.raises(ConfigError, match=message):
        SampleConfig(**{"beam": 2, **settings})


def test_beam_needs_a_stream_model(tmp_path):
    run = train_window_run(tmp_path / "w", write_text(tmp_path / "t.txt"))
    with pytest.raises(ConfigError, match="stream model"):
        generate_text(load_model(run), "the quick brown fox jumps over", length=5, beam=2)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    return load_model(tiny_items_run(tmp_path_factory, labelled=True))


def test_beam_finds_the_most_likely_whole_items_of_a_label(labelled):
    loaded = labelled
    draw = generate_items(loaded, 3, SampleConfig(beam=4), labels=["big"], max_item_chars=40)
    assert len(draw.items) == 3
    for item in draw.items:
        assert item.complete and item.label == "big"
        assert "\x02" not in item.text and "\x03" not in item.text
        assert item.logprob == pytest.approx(score_items(loaded, [("big", item.text)])[0], abs=1e-4)
    means = [item.logprob / (item.chars + 1) for item in draw.items]  # the end counts as a character
    assert means == sorted(means, reverse=True)
    # Each is at least as likely, per character, as any of many sampled items of that label.
    sampled = generate_items(loaded, 40, SampleConfig(seed=0), labels=["big"], max_item_chars=40)
    assert means[0] >= max(i.logprob / (i.chars + 1) for i in sampled.items if i.complete) - 1e-6
    prefixed = generate_items(loaded, 2, SampleConfig(beam=2), labels=["small"], prompt="k")
    assert all(item.text.startswith("k") for item in prefixed.items)


@pytest.mark.parametrize("kwargs, message", [
    ({"labels": []}, "exactly one"), ({"labels": ["big", "small"]}, "exactly one"),
    ({"labels": ["big"], "new_only": True}, "new_only"), ({"labels": ["big"], "n": 5}, "beam of 4"),
])
def test_beam_items_refuse_what_a_search_cannot_do(labelled, kwargs, message):
    kwargs = {"n": 2, **kwargs}
    with pytest.raises(ConfigError, match=message):
        generate_items(labelled, kwargs.pop("n"), SampleConfig(beam=4), **kwargs)


def test_generate_beam_prints_the_continuations_best_first(loaded, tmp_path):
    run = Path(loaded.path)
    one = invoke("generate", run, "--prompt", "the ", "--length", "40", "--beam", "3")
    assert one.exit_code == 0, one.output
    assert one.stdout == "the " + generate_text(loaded, "the ", length=40, beam=3)[0] + "\n"
    two = invoke("generate", run, "--prompt", "the ", "--length", "40", "--beam", "3", "--num-samples", "2")
    assert two.exit_code == 0 and two.stdout.count("--- continuation") == 2
    means = [float(line.split("mean log-probability ")[1].split(")")[0])
             for line in two.stdout.splitlines() if line.startswith("---")]
    assert means == sorted(means, reverse=True) and all(m < 0 and math.isfinite(m) for m in means)
    refused = invoke("generate", run, "--beam", "2", "--top-k", "3")
    assert refused.exit_code != 0 and "top_k" in refused.output
