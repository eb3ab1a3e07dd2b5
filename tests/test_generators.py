"""Sampling strategies and the stream / window generators, checked against naive references."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from _runs import (
    sample_text,
    stream_ids,
    tiny_model,
    train_stream_run,
    train_window_run,
    window_ids,
    write_text,
)
from charlstm.config.sample import SampleConfig
from charlstm.errors import ConfigError, CorpusError, UnknownCharactersError
from charlstm.generation import interactive as interactive_module
from charlstm.generation.generators import _sample_steps, generate, generate_text
from charlstm.generation.interactive import interactive
from charlstm.generation.sampling import Sampler, make_generator
from charlstm.model.network import PRIME_CHUNK, prime
from charlstm.runs.loading import load_model

V = 11


@pytest.fixture(scope="module")
def stream_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("generate")
    return train_stream_run(root / "run", write_text(root / "text.txt"))


@pytest.fixture(scope="module")
def lowercase_run(tmp_path_factory) -> Path:
    """A tutorial-preset run: its training text was lowercased."""
    root = tmp_path_factory.mktemp("generate-tutorial")
    return train_window_run(root / "run", write_text(root / "text.txt", words=60))


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class FixedLogits:
    """A reader whose logits never change: the generators' sampling without a model."""

    def __init__(self, logits: torch.Tensor):
        self.logits = logits  # (B, V)

    def advance(self, ids: torch.Tensor) -> None:
        pass


def sample_next(logits: torch.Tensor, config: SampleConfig, generator: torch.Generator) -> torch.Tensor:
    """One id per row of (B, V) logits: one step of the generators' own loop, its noise drawn for it alone."""
    step = replace(config, length=1, num_samples=logits.shape[0])
    return next(_sample_steps(FixedLogits(logits.detach().float()), step, generator, logits.device))


def reference_probs(row: torch.Tensor, config: SampleConfig) -> torch.Tensor:
    """(V,) logits -> (V,) probabilities, as written out by hand: temperature, top-k, top-p, min-p,
    renormalise."""
    probs = torch.softmax(row.double() / config.temperature, dim=-1).tolist()
    ranked = sorted(range(len(probs)), key=lambda i: -probs[i])[: config.top_k]
    if config.top_p is not None:
        total, kept, mass = sum(probs[i] for i in ranked), [], 0.0
        for i in ranked:
            if mass >= config.top_p:  # the ones before already reach top_p
                break
            kept.append(i)
            mass += probs[i] / total
        ranked = kept
    if config.min_p is not None:
        ranked = [i for i in ranked if probs[i] >= config.min_p * probs[ranked[0]]]
    out = torch.zeros(len(probs), dtype=torch.float64)
    out[ranked] = torch.tensor([probs[i] for i in ranked], dtype=torch.float64)
    return out / out.sum()


def reference_draws(row: torch.Tensor, config: SampleConfig, draws: int, generator: torch.Generator
                    ) -> torch.Tensor:
    """``draws`` ids from one row of (V,) logits: its softmax, then ``multinomial``; no shortcut."""
    return torch.multinomial(reference_probs(row, config), draws, replacement=True, generator=generator)


def support(logits: torch.Tensor, config: SampleConfig, draws: int = 4000, seed: int = 0) -> set[int]:
    """The ids drawn for one row of logits over many independent draws."""
    rows = logits.reshape(1, -1).expand(draws, -1)
    return set(sample_next(rows, config, seeded(seed)).tolist())


def logits_of(probs: list[float]) -> torch.Tensor:
    return torch.tensor(probs).log()


# ---- one sampling step ---------------------------------------------------------------------


@pytest.mark.parametrize("config", [
    SampleConfig(), SampleConfig(temperature=0.5), SampleConfig(temperature=2.0), SampleConfig(top_k=3),
    SampleConfig(top_p=0.8), SampleConfig(min_p=0.2), SampleConfig(temperature=2.0, min_p=0.3),
    SampleConfig(temperature=0.7, top_k=5, top_p=0.9),
    SampleConfig(temperature=0.7, top_k=6, top_p=0.95, min_p=0.1),
], ids=["plain", "cold", "hot", "top_k", "top_p", "min_p", "hot_min_p", "all", "all_min_p"])
def test_the_fast_step_draws_as_the_softmax_multinomial_reference(config):
    draws = 10_000  # as many rows as one SampleConfig takes
    row = torch.randn(V, generator=seeded(20)) * 1.5
    fast = torch.bincount(sample_next(row.expand(draws, -1), config, seeded(21)), minlength=V) / draws
    slow = torch.bincount(reference_draws(row, config, draws, seeded(22)), minlength=V) / draws
    assert torch.equal(fast > 0, slow > 0)  # the same characters are ever drawn
    probs = reference_probs(row, config).float()
    # The two shares of each character differ by at most ~5 standard deviations of their difference.
    assert ((fast - slow).abs() <= 5 * (2 * probs * (1 - probs) / draws).sqrt() + 1e-9).all(), (fast, slow)


@pytest.mark.parametrize("config", [
    SampleConfig(top_k=3), SampleConfig(top_p=0.8), SampleConfig(min_p=0.2),
    SampleConfig(temperature=0.5, min_p=0.5), SampleConfig(temperature=2.0, top_k=6, top_p=0.9, min_p=0.3),
    SampleConfig(temperature=0.7, top_p=0.95, min_p=0.05),
], ids=["top_k", "top_p", "min_p", "cold_min_p", "hot_all", "cold_p_min_p"])
def test_the_filtered_scores_give_the_reference_probabilities(config):
    # The race draws exactly softmax(scores): its probabilities, compared without sampling.
    rows = torch.randn(8, V, generator=seeded(23)) * 1.5
    probs = Sampler(config).scores(rows).double().softmax(dim=-1)
    for row, got in zip(rows, probs, strict=True):
        assert torch.allclose(got, reference_probs(row, config), atol=1e-6)


def test_greedy_is_argmax_whatever_the_temperature():
    logits = torch.randn(64, V, generator=seeded(1))
    for temperature in (0.1, 1.0, 5.0):
        picked = sample_next(logits, SampleConfig(greedy=True, temperature=temperature), seeded())
        assert torch.equal(picked, logits.argmax(dim=-1))


@pytest.mark.parametrize("temperature", [0.05, 1.0, 20.0])
def test_top_k_1_equals_greedy(temperature):
    logits = torch.randn(256, V, generator=seeded(2))
    picked = sample_next(logits, SampleConfig(top_k=1, temperature=temperature), seeded(3))
    assert torch.equal(picked, logits.argmax(dim=-1))


@pytest.mark.parametrize("k", [2, 3, 5])
def test_top_k_draws_only_from_the_k_most_likely(k):
    logits = torch.randn(V, generator=seeded(k)) * 0.5  # flat enough that every survivor gets drawn
    expected = set(torch.topk(logits, k).indices.tolist())
    assert support(logits, SampleConfig(top_k=k)) == expected


def test_top_k_at_or_above_the_vocabulary_keeps_everything():
    logits = torch.zeros(V)
    assert support(logits, SampleConfig(top_k=V)) == set(range(V))
    assert support(logits, SampleConfig(top_k=V + 5)) == set(range(V))


@pytest.mark.parametrize(
    ("top_p", "expected"),
    [(0.5, {0}), (0.7, {0, 1}), (0.85, {0, 1, 2}), (0.97, {0, 1, 2, 3}), (1.0, {0, 1, 2, 3})],
)
def test_top_p_keeps_the_smallest_set_reaching_p(top_p, expected):
    probs = [0.5, 0.3, 0.15, 0.05]
    assert support(logits_of(probs), SampleConfig(top_p=top_p)) == expected


def test_top_p_works_per_row_in_each_rows_own_order():
    # Row 1 is row 0 reversed: the kept set must follow each row's own ranking.
    rows = torch.stack([logits_of([0.5, 0.3, 0.15, 0.05]), logits_of([0.05, 0.15, 0.3, 0.5])])
    draws = sample_next(rows.repeat(2000, 1), SampleConfig(top_p=0.7), seeded()).view(2000, 2)
    assert set(draws[:, 0].tolist()) == {0, 1}
    assert set(draws[:, 1].tolist()) == {3, 2}


def test_top_p_renormalises_the_kept_probabilities():
    draws = 8000
    rows = logits_of([0.5, 0.3, 0.15, 0.05]).expand(draws, -1)
    counts = Counter(sample_next(rows, SampleConfig(top_p=0.7), seeded(4)).tolist())
    # Kept {0, 1} with probabilities 0.5 / 0.8 and 0.3 / 0.8; the tolerance is ~5 standard deviations.
    assert counts[0] / draws == pytest.approx(0.5 / 0.8, abs=0.03)
    assert counts[1] / draws == pytest.approx(0.3 / 0.8, abs=0.03)


def test_top_p_applies_to_what_top_k_kept():
    logits = logits_of([0.5, 0.3, 0.15, 0.05])
    assert support(logits, SampleConfig(top_p=0.6)) == {0, 1}  # 0.5 alone does not reach 0.6
    # top_k=2 leaves 0.625 / 0.375: 0.625 alone reaches 0.6.
    assert support(logits, SampleConfig(top_k=2, top_p=0.6)) == {0}


def test_low_temperature_concentrates_and_high_temperature_flattens():
    logits = torch.tensor([1.0, 0.5, 0.0, -0.5])
    draws = 4000

    def share_of_argmax(temperature: float) -> float:
        rows = logits.expand(draws, -1)
        picked = sample_next(rows, SampleConfig(temperature=temperature), seeded(5))
        return (picked == 0).float().mean().item()

    expected = {t: torch.softmax(logits / t, -1)[0].item() for t in (0.1, 1.0, 10.0)}
    shares = {t: share_of_argmax(t) for t in expected}
    assert shares[0.1] > 0.98
    assert shares[0.1] > shares[1.0] > shares[10.0]
    for t, share in shares.items():
        assert share == pytest.approx(expected[t], abs=0.04)


def test_same_seed_same_samples_other_seed_other_samples():
    logits = torch.randn(300, V, generator=seeded(6))
    first = sample_next(logits, SampleConfig(), seeded(42))
    again = sample_next(logits, SampleConfig(), seeded(42))
    other = sample_next(logits, SampleConfig(), seeded(43))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_make_generator_reports_the_seed_it_drew():
    generator, seed = make_generator(None, torch.device("cpu"))
    replay, same_seed = make_generator(seed, torch.device("cpu"))
    assert same_seed == seed
    assert torch.equal(torch.rand(20, generator=generator), torch.rand(20, generator=replay))


@pytest.mark.parametrize(
    "settings",
    [
        {"length": -1},
        {"num_samples": 0},
        {"temperature": 0.0},
        {"temperature": -1.0},
        {"top_k": 0},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"top_p": -0.2},
    ],
)
def test_sample_config_rejects_impossible_settings(settings):
    with pytest.raises(ConfigError):
        SampleConfig(**settings)


def test_sample_config_accepts_the_edges():
    SampleConfig(length=0, top_k=1, top_p=1.0, temperature=1e-3)


# ---- stateful generation ---------------------------------------------------------------------


def naive_stream(model, prompt: torch.Tensor, config: SampleConfig, generator: torch.Generator) -> list[int]:
    """Re-read the whole text from a zero state for every new character: O(n) per step."""
    ids = prompt.tolist()
    out = []
    for _ in range(config.length):
        logits, _ = model(torch.tensor([ids]))
        next_id = sample_next(logits[:, -1], config, generator).item()
        out.append(next_id)
        ids.append(next_id)
    return out


def naive_window(model, prompt: torch.Tensor, seq_len: int, config: SampleConfig,
                 generator: torch.Generator) -> list[int]:
    """The tutorial's loop: predict from the last ``seq_len`` ids, then slide by one."""
    window = prompt.tolist()[-seq_len:]
    out = []
    for _ in range(config.length):
        logits, _ = model(torch.tensor([window]))
        next_id = sample_next(logits[:, -1], config, generator).item()
        out.append(next_id)
        window = [*window, next_id][-seq_len:]
    return out


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("config", [SampleConfig(greedy=True, length=40),
                                    SampleConfig(temperature=0.8, top_k=4, length=40)])
def test_stream_ids_equals_rereading_the_whole_prefix(cell, config):
    model = tiny_model(V, cell=cell, scale=4.0)
    prompt = torch.randint(0, V, (7,), generator=seeded(7))
    fast = [step.item() for step in stream_ids(model, prompt, config, seeded(8))]
    slow = naive_stream(model, prompt, config, seeded(8))
    assert fast == slow
    assert len(set(fast)) > 1  # a model stuck on one character would prove little


@pytest.mark.parametrize("prompt_len", [3, 9, 20])
def test_window_ids_equals_the_sliding_window_reference(prompt_len):
    seq_len = 9
    model = tiny_model(V, scale=4.0)
    prompt = torch.randint(0, V, (prompt_len,), generator=seeded(9))
    config = SampleConfig(temperature=0.9, top_k=6, length=25)  # greedy settles on one id here
    fast = [step.item() for step in window_ids(model, prompt, seq_len, config, seeded())]
    assert fast == naive_window(model, prompt, seq_len, config, seeded())
    assert len(set(fast)) > 1


def test_window_ids_reads_the_last_seq_len_ids_from_a_zero_state():
    seq_len, length = 6, 12
    model = tiny_model(V)
    seen: list[tuple[list[int], bool]] = []
    forward = model.forward

    def recording_forward(ids, state=None):
        seen.append((ids[0].tolist(), state is None))
        return forward(ids, state)

    model.forward = recording_forward
    prompt = torch.randint(0, V, (10,), generator=seeded(10))
    config = SampleConfig(temperature=1.0, length=length)
    generated = [step.item() for step in window_ids(model, prompt, seq_len, config, seeded())]
    text = prompt.tolist() + generated
    assert len(seen) == length
    for step, (window, fresh_state) in enumerate(seen):
        end = len(prompt) + step
        assert window == text[end - seq_len : end]
        assert fresh_state


@pytest.mark.parametrize("framing", ["stream", "window"])
def test_num_samples_gives_a_row_per_sample_and_greedy_rows_agree(framing):
    model = tiny_model(V)
    prompt = torch.randint(0, V, (8,), generator=seeded(11))

    def run(config: SampleConfig) -> torch.Tensor:
        steps = (stream_ids(model, prompt, config, seeded(12)) if framing == "stream"
                 else window_ids(model, prompt, 5, config, seeded(12)))
        return torch.stack(list(steps), dim=1)  # (num_samples, length)

    greedy = run(SampleConfig(greedy=True, num_samples=4, length=30))
    single = run(SampleConfig(greedy=True, num_samples=1, length=30))
    assert greedy.shape == (4, 30)
    assert (greedy == single).all()
    sampled = run(SampleConfig(temperature=1.5, num_samples=4, length=30))
    assert sampled.shape == (4, 30)
    assert len({tuple(row) for row in sampled.tolist()}) == 4  # independent samples


def test_zero_length_generates_nothing():
    model = tiny_model(V)
    assert list(stream_ids(model, torch.tensor([1, 2]), SampleConfig(length=0), seeded())) == []


# ---- long prompts: read in chunks ----------------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_prime_in_chunks_equals_one_forward_call(cell):
    model = tiny_model(V, cell=cell, scale=4.0)
    ids = torch.randint(0, V, (2, 50), generator=seeded(11))
    logits, state = model(ids)
    chunked_logits, chunked_state = prime(model, ids, chunk=7)  # 7 chunks, the last one short
    assert torch.allclose(chunked_logits, logits[:, -1], atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(chunked_state, state, strict=True))


def test_a_prompt_longer_than_a_chunk_continues_as_the_naive_reference():
    model = tiny_model(V, scale=4.0)  # the LSTM's stepper takes over from the chunked state
    prompt = torch.randint(0, V, (PRIME_CHUNK + 900,), generator=seeded(12))
    config = SampleConfig(temperature=0.8, length=12)
    fast = [step.item() for step in stream_ids(model, prompt, config, seeded(13))]
    assert fast == naive_stream(model, prompt, config, seeded(13))


def spy_on_forward(model) -> list[int]:
    """Record the T of every (B, T) call of ``model``'s forward."""
    lengths: list[int] = []
    forward = model.forward

    def recording_forward(ids, state=None):
        lengths.append(ids.shape[1])
        return forward(ids, state)

    model.forward = recording_forward
    return lengths


def long_prompt(chars: int = 1_000_000, words: int = 600) -> str:
    """``chars`` characters of the training text repeated (``words`` as the run was trained on)."""
    text = sample_text(words)
    return (text * (chars // len(text) + 1))[:chars]


def test_a_megabyte_prompt_is_read_in_bounded_chunks(stream_run):
    loaded = load_model(stream_run)
    lengths = spy_on_forward(loaded.model)
    used, steps = generate(loaded, long_prompt(), SampleConfig(length=20, seed=0))
    assert len(used) == 1_000_000 and len(list(steps)) == 20
    assert sum(lengths) == 1_000_000  # the whole prompt was read, then single steps followed
    assert max(lengths) <= PRIME_CHUNK  # never a (1, 10^6, V) logits tensor


def test_a_window_model_reads_only_the_last_window_of_a_long_prompt(lowercase_run):
    loaded = load_model(lowercase_run)
    seq_len = loaded.framing.seq_len
    lengths = spy_on_forward(loaded.model)
    prompt = long_prompt(words=60)
    long = generate_text(loaded, prompt, length=15, greedy=True)
    assert max(lengths) <= seq_len
    assert long == generate_text(loaded, prompt[-seq_len:], length=15, greedy=True)


# ---- generate / generate_text on a trained run ---------------------------------------------------


def test_generate_text_is_reproducible_with_a_seed(stream_run):
    loaded = load_model(stream_run)
    first = generate_text(loaded, "the ", length=60, seed=7)
    assert first == generate_text(loaded, "the ", length=60, seed=7)
    assert first != generate_text(loaded, "the ", length=60, seed=8)
    assert len(first) == 1 and len(first[0]) == 60
    assert set(first[0]) <= set(loaded.vocab.chars)


def test_generate_text_num_samples(stream_run):
    loaded = load_model(stream_run)
    samples = generate_text(loaded, "Alice ", length=30, num_samples=3, seed=1)
    assert len(samples) == 3 and all(len(s) == 30 for s in samples)
    greedy = generate_text(loaded, "Alice ", length=30, num_samples=3, greedy=True)
    assert greedy[0] == greedy[1] == greedy[2]


def test_generate_reports_the_prompt_used(stream_run):
    loaded = load_model(stream_run)
    used, steps = generate(loaded, "the fox", SampleConfig(length=5, seed=0))
    assert used == "the fox"
    assert len(list(steps)) == 5
    # A stream model with no prompt starts as at a paragraph break.
    used, _ = generate(loaded, None, SampleConfig(length=5, seed=0))
    assert used == "\n"


def test_unknown_prompt_characters_are_listed(stream_run):
    loaded = load_model(stream_run)
    with pytest.raises(UnknownCharactersError) as caught:
        generate_text(loaded, "the ☃ fox €☃", length=5, seed=0)
    assert caught.value.unknown == ["€", "☃"]
    assert "'☃'" in str(caught.value) and "'€'" in str(caught.value)
    assert "unknown" in str(caught.value) and "--unknown" in caught.value.hint  # setting, then flag


def test_unknown_drop_and_replace_equal_the_cleaned_prompt(stream_run):
    loaded = load_model(stream_run)
    settings = {"length": 40, "seed": 3}
    dropped = generate_text(loaded, "the ☃fox", unknown="drop", **settings)
    assert dropped == generate_text(loaded, "the fox", **settings)
    replaced = generate_text(loaded, "the☃fox", unknown="replace", replacement=" ", **settings)
    assert replaced == generate_text(loaded, "the fox", **settings)


def test_unknown_policy_errors(stream_run):
    loaded = load_model(stream_run)
    with pytest.raises(CorpusError, match="replacement"):
        generate_text(loaded, "the ☃", length=5, unknown="replace", replacement="☂")
    with pytest.raises(CorpusError, match="empty"):
        generate_text(loaded, "☃€", length=5, unknown="drop")
    with pytest.raises(ConfigError, match="unknown must be"):
        generate_text(loaded, "the ☃", length=5, unknown="ignore")
    with pytest.raises(ConfigError, match="unknown must be"):  # a bad name fails even on clean text
        generate_text(loaded, "the", length=5, unknown="ignore")


def test_streaming_generation_matches_the_naive_reference_on_a_trained_model(stream_run):
    loaded = load_model(stream_run)
    prompt = "the White Rabbit"
    config = SampleConfig(greedy=True, length=30)
    _, steps = generate(loaded, prompt, config)
    fast = "".join(step[0] for step in steps)
    ids = torch.from_numpy(loaded.vocab.encode(prompt))
    slow = loaded.vocab.decode(naive_stream(loaded.model, ids, config, seeded()))
    assert fast == slow


def test_the_prompt_is_cleaned_like_the_training_text(lowercase_run):
    loaded = load_model(lowercase_run)
    assert loaded.meta.corpus_config.lowercase
    expected = generate_text(loaded, "the white rabbit", length=20, greedy=True)
    assert generate_text(loaded, "The White Rabbit", length=20, greedy=True) == expected


# ---- the interactive loop ------------------------------------------------------------------------


def session(loaded, lines: list[str], **settings) -> tuple[str, list[str], list[str]]:
    """An interactive session fed ``lines``: its text, what it wrote and the notes it gave."""
    feed = iter(lines)
    written: list[str] = []
    notes: list[str] = []
    text = interactive(loaded, SampleConfig(length=12, seed=5, **settings), lambda: next(feed, None),
                       written.append, notes.append)
    return text, written, notes


def test_interactive_continues_what_the_user_types(stream_run):
    loaded = load_model(stream_run)
    text, written, notes = session(loaded, ["the ", "", "/reset", "a", "/quit", "never read"])
    # Three turns ("the ", Enter alone for more, "a" after /reset), each 12 characters then a newline.
    assert len(written) == 3 * 13 and notes == []
    turns = ["".join(written[i * 13 : i * 13 + 12]) for i in range(3)]
    assert all(written[i * 13 + 12] == "\n" for i in range(3))
    assert text == "a" + turns[2]  # /reset dropped the first text; /quit stopped before "never read"
    assert session(loaded, ["the ", "", "/reset", "a", "/quit"])[1] == written  # a seeded session repeats


def interrupted_first_turn(monkeypatch, after: int) -> None:
    """Ctrl-C (KeyboardInterrupt) while the first turn's step ``after`` is being made."""
    real, turns = interactive_module.generate, []

    def generate_then_interrupt(*args, **kwargs):
        prompt, steps = real(*args, **kwargs)
        turns.append(prompt)

        def stepping(first: bool = len(turns) == 1):
            for k, step in enumerate(steps):
                if first and k == after:
                    raise KeyboardInterrupt
                yield step

        return prompt, stepping()

    monkeypatch.setattr(interactive_module, "generate", generate_then_interrupt)


def test_ctrl_c_during_a_continuation_stops_it_and_the_session_goes_on(stream_run, monkeypatch):
    loaded = load_model(stream_run)
    _, whole, _ = session(loaded, ["the "])
    interrupted_first_turn(monkeypatch, after=5)
    text, written, notes = session(loaded, ["the ", "a", "/quit"])
    assert written[:6] == [*whole[:5], "\n"]  # the first turn stopped after 5 characters
    second = "".join(written[6:-1])
    assert len(second) == 12 and written[-1] == "\n" and notes == []
    assert text == "the " + "".join(whole[:5]) + "a" + second  # what was written before Ctrl-C stays


@pytest.mark.parametrize("bad", ["a \u2603 b", "\u20ac"])
def test_an_unknown_character_is_named_and_the_session_goes_on(stream_run, bad):
    loaded = load_model(stream_run)
    text, written, notes = session(loaded, ["the ", bad, "", "/quit"])
    unknown = next(ch for ch in bad if ch not in loaded.vocab.chars)
    assert len(notes) == 1 and repr(unknown) in notes[0] and "left out" in notes[0]
    assert (text, written) == session(loaded, ["the ", "", "/quit"])[:2]  # as if it was never typed


def test_a_line_that_drops_to_nothing_is_named_too(stream_run):
    loaded = load_model(stream_run)
    _, written, notes = session(loaded, ["\u2603", "the ", "/quit"], unknown="drop")
    assert len(notes) == 1 and "empty" in notes[0] and len(written) == 13


@pytest.mark.parametrize("temperature", [1e-39, 1e-29, 1e-20, 1e-8])
def test_a_tiny_temperature_filters_to_the_best_character_without_nan(temperature):
    logits = torch.randn(6, 40, generator=torch.Generator().manual_seed(0)) * 60  # big, as a trained head's
    for config in (SampleConfig(temperature=temperature, top_p=0.9), SampleConfig(temperature=temperature,
                                                                                   top_k=4, top_p=0.5)):
        assert torch.equal(sample_next(logits, config, seeded()), logits.argmax(dim=-1))
        if config.greedy:  # below GREEDY_BELOW: nothing to filter
            continue
        scores = Sampler(config).scores(logits)
        assert not scores.isnan().any()
        kept = scores.isfinite()
        assert kept.sum(dim=-1).tolist() == [1] * 6  # only the best survives top-p at such a temperature
        assert torch.equal(scores.argmax(dim=-1), logits.argmax(dim=-1))


def test_best_of_keeps_the_draw_the_model_finds_most_likely(stream_loaded_for_best_of):
    from charlstm.generation.generators import continuation_logprobs

    loaded = stream_loaded_for_best_of
    draws = generate_text(loaded, "the ", length=30, num_samples=4, seed=9, temperature=1.5)
    ids = torch.as_tensor(loaded.vocab.encode("the "))
    scores = continuation_logprobs(loaded.model, ids, [loaded.vocab.encode(t) for t in draws])
    assert generate_text(loaded, "the ", length=30, best_of=4, seed=9, temperature=1.5) == [
        draws[max(range(4), key=scores.__getitem__)]]
    # The score is the mean log-probability under the model, read naively in one pass.
    text = draws[0]
    full = torch.as_tensor(loaded.vocab.encode("the " + text))
    with torch.no_grad():
        logits, _ = loaded.model(full[None, :-1])
    logp = logits[0].log_softmax(-1).gather(-1, full[1:, None])[:, 0][len("the ") - 1 :]
    assert scores[0] == pytest.approx(logp.mean().item(), rel=1e-5)


def test_best_of_needs_a_stream_model(tmp_path):
    run = train_window_run(tmp_path / "w", write_text(tmp_path / "t.txt"))
    with pytest.raises(ConfigError, match="stream model"):
        generate_text(load_model(run), "the quick brown fox jumps over", length=5, best_of=2)


@pytest.fixture(scope="module")
def stream_loaded_for_best_of(tmp_path_factory):
    root = tmp_path_factory.mktemp("best-of")
    return load_model(train_stream_run(root / "run", write_text(root / "t.txt")))


def _has_repeat(text: str, n: int = 20) -> bool:
    seen: set[str] = set()
    for i in range(len(text) - n + 1):
        if text[i : i + n] in seen:
            return True
        seen.add(text[i : i + n])
    return False


def test_the_repeat_penalty_breaks_the_loop_of_a_model_that_loops(stream_loaded_for_best_of):
    loaded = stream_loaded_for_best_of  # a few steps of training: greedy text loops
    plain = generate_text(loaded, "the ", length=200, greedy=True)[0]
    assert _has_repeat(plain)
    for multiplier in (0.8, 2.0):
        checked = generate_text(loaded, "the ", length=200, greedy=True, dry_multiplier=multiplier,
                                dry_allowed_length=8)[0]
        assert not _has_repeat(checked), checked
