"""logprobs and echo in OpenAI's completions API, /tokenize and /detokenize: checked against the model."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[dev,serve]'")
pytest.importorskip("openai", reason="the openai client is a dev dependency")

import openai
import torch
from fastapi.testclient import TestClient

from _runs import train_window_run, write_text
from _serving import running_server, tiny_items_run, tiny_run
from charlstm.runs.loading import LoadedModel, load_model
from charlstm.serve import logprobs as logprobs_module
from charlstm.serve.app import ServeLimits, create_app

LIMITS = ServeLimits(max_prompt_chars=40, max_length=300, max_num_samples=3, max_concurrent=6)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def loaded(run_dir) -> LoadedModel:
    return load_model(run_dir)


@pytest.fixture(scope="module")
def app(run_dir):
    return create_app({"tiny": run_dir}, LIMITS)


@pytest.fixture(scope="module")
def client(app):
    """The official client, against the app on a real loopback server; no retries, to see each answer."""
    with running_server(app) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=30)


def stream_reference(loaded: LoadedModel, text: str) -> torch.Tensor:
    """(T - 1, V): log_softmax of the logits of one forward pass over ``text``; row i predicts text[i + 1]."""
    ids = torch.from_numpy(loaded.vocab.encode(text))[None]
    with torch.inference_mode():
        logits, _ = loaded.model(ids)  # (1, T, V)
    return logits[0, :-1].float().log_softmax(-1)


def window_reference(loaded: LoadedModel, text: str) -> torch.Tensor:
    """(T - 1, V), naively: each character from the seq_len before it (fewer at first), read alone."""
    ids, window = torch.from_numpy(loaded.vocab.encode(text)), loaded.framing.seq_len
    rows = []
    with torch.inference_mode():
        for i in range(1, len(ids)):
            logits, _ = loaded.model(ids[max(0, i - window) : i][None])
            rows.append(logits[0, -1].float().log_softmax(-1))
    return torch.stack(rows)


def expected(loaded: LoadedModel, text: str, reference=stream_reference) -> list[float | None]:
    """Each character's log-probability given those before it; None for the first, as OpenAI's echo."""
    ids = loaded.vocab.encode(text)
    logp = reference(loaded, text)
    return [None] + [float(logp[i - 1, ids[i]]) for i in range(1, len(ids))]


def close(got: list[float | None], want: list[float | None]) -> bool:
    return [g is None for g in got] == [w is None for w in want] and all(
        g == pytest.approx(w, abs=1e-5) for g, w in zip(got, want, strict=True) if w is not None)


def test_the_openai_client_reads_logprobs_and_the_text_is_unchanged(client, loaded):
    settings = {"model": "tiny", "prompt": "the ", "max_tokens": 30, "temperature": 0.8, "seed": 3}
    plain = client.completions.create(**settings).choices[0]
    [choice] = client.completions.create(**settings, logprobs=2).choices
    assert plain.logprobs is None and choice.text == plain.text  # sampling untouched
    lp = choice.logprobs
    assert "".join(lp.tokens) == choice.text and len(lp.tokens) == 30
    assert lp.text_offset == list(range(4, 34))  # places in prompt + text, as OpenAI counts them
    # Under the raw distribution (temperature 1), whatever temperature drew them.
    assert close(lp.token_logprobs, expected(loaded, "the " + choice.text)[4:])
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert top[token] == pytest.approx(logprob) and 2 <= len(top) <= 3


def test_echo_gives_the_prompt_s_logprobs_first_null(client, loaded):
    reply = client.completions.create(model="tiny", prompt="the White Rabbit", max_tokens=0, echo=True,
                                      logprobs=0)
    [choice] = reply.choices
    assert choice.text == "the White Rabbit" and choice.finish_reason == "length"
    assert reply.usage.completion_tokens == 0 and reply.usage.prompt_tokens == 16
    lp = choice.logprobs
    assert lp.tokens == list("the White Rabbit") and lp.text_offset == list(range(16))
    assert lp.top_logprobs[0] is None and close(lp.token_logprobs, expected(loaded, "the White Rabbit"))
    assert all(top == {t: p} for t, p, top in zip(lp.tokens[1:], lp.token_logprobs[1:], lp.top_logprobs[1:],
                                                  strict=True))  # logprobs 0: the character itself

    generated = client.completions.create(model="tiny", prompt="she ", max_tokens=25, echo=True, logprobs=1,
                                          seed=8).choices[0]
    assert "".join(generated.logprobs.tokens) == generated.text
    assert close(generated.logprobs.token_logprobs, expected(loaded, generated.text))


def test_an_lm_eval_loglikelihood_request_gives_the_continuation_s_log_likelihood(client, loaded):
    """As lm-evaluation-harness's local-completions asks: context + continuation, echo, logprobs 1,
    max_tokens 0, several requests in one call; it finds the continuation by text_offset."""
    pairs = [("the quick ", "brown fox"), ("Alice reads her ", "book")]
    reply = client.completions.create(model="tiny", prompt=[c + x for c, x in pairs], echo=True, logprobs=1,
                                      max_tokens=0, temperature=0)
    for choice, (context, continuation) in zip(reply.choices, pairs, strict=True):
        lp = choice.logprobs
        start = lp.text_offset.index(len(context))
        loglikelihood = sum(lp.token_logprobs[start:])
        is_greedy = all(p == max(top.values()) for p, top in zip(lp.token_logprobs[start:],
                                                                 lp.top_logprobs[start:], strict=True))
        logp = stream_reference(loaded, context + continuation)  # the model's own
        ids = loaded.vocab.encode(context + continuation)
        positions = range(len(context), len(ids))
        assert loglikelihood == pytest.approx(sum(float(logp[i - 1, ids[i]]) for i in positions), abs=1e-4)
        assert is_greedy == all(int(logp[i - 1].argmax()) == ids[i] for i in positions)


def test_top_logprobs_hold_the_k_most_likely_and_the_character_that_came(client, loaded):
    [choice] = client.completions.create(model="tiny", prompt="the rabbit ", max_tokens=40, logprobs=5,
                                         seed=4).choices
    logp = stream_reference(loaded, "the rabbit " + choice.text)[10:]  # rows predicting the new characters
    chars = loaded.vocab.chars
    for row, token, top in zip(logp, choice.logprobs.tokens, choice.logprobs.top_logprobs, strict=True):
        best = {chars[i]: float(row[i]) for i in row.topk(5).indices.tolist()}
        assert set(best) <= set(top) <= set(best) | {token}
        assert all(top[c] == pytest.approx(v, abs=1e-5) for c, v in best.items())


def test_greedy_text_is_the_most_likely_character_at_every_step(client):
    [choice] = client.completions.create(model="tiny", prompt="the ", max_tokens=40, temperature=0,
                                         logprobs=1).choices
    lp = choice.logprobs
    assert all(p == max(top.values()) for p, top in zip(lp.token_logprobs, lp.top_logprobs, strict=True))


def test_streamed_chunks_carry_logprobs_that_add_up_to_the_whole(client):
    settings = {"model": "tiny", "prompt": ["she ", "the "], "max_tokens": 120, "seed": 5, "n": 2,
                "stop": "\n\n", "echo": True, "logprobs": 3}
    whole = client.completions.create(**settings)
    parts = {c.index: {"text": "", "tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
             for c in whole.choices}
    for chunk in client.completions.create(**settings, stream=True):
        for choice in chunk.choices:
            part = parts[choice.index]
            part["text"] += choice.text
            for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
                part[key] += getattr(choice.logprobs, key)
    for c in whole.choices:
        part, lp = parts[c.index], c.logprobs
        assert part["text"] == c.text and part["tokens"] == lp.tokens
        assert part["text_offset"] == lp.text_offset
        assert close(part["token_logprobs"], lp.token_logprobs)
        assert [t and set(t) for t in part["top_logprobs"]] == [t and set(t) for t in lp.top_logprobs]


def test_without_logprobs_nothing_is_read_again(client, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a request without logprobs was scored")

    monkeypatch.setattr(logprobs_module.TextScorer, "feed", refuse)
    settings = {"model": "tiny", "prompt": "the ", "max_tokens": 20, "seed": 1, "echo": True}
    assert client.completions.create(**settings).choices[0].logprobs is None
    assert all(c.logprobs is None for chunk in client.completions.create(**settings, stream=True)
               for c in chunk.choices)


def test_a_window_model_s_logprobs_are_its_windows(tmp_path):
    run = train_window_run(tmp_path / "window", write_text(tmp_path / "t.txt"))
    loaded = load_model(run)
    assert loaded.framing.seq_len < 19  # the prompt below is longer than a window
    with TestClient(create_app({"w": run}, LIMITS)) as local:
        body = {"prompt": "the rabbit and the ", "max_tokens": 30, "echo": True, "logprobs": 1, "seed": 2}
        choice = local.post("/v1/completions", json=body).json()["choices"][0]
        greedy = local.post("/v1/completions", json={**body, "temperature": 0}).json()["choices"][0]
    assert close(choice["logprobs"]["token_logprobs"], expected(loaded, choice["text"], window_reference))
    generated = greedy["logprobs"]
    assert all(p == max(top.values()) for p, top in zip(generated["token_logprobs"][19:],
                                                        generated["top_logprobs"][19:], strict=True))


def test_tokenize_and_detokenize_round_trip(app, loaded):
    with TestClient(app) as local:
        tokens = local.post("/tokenize", json={"model": "tiny", "prompt": "the White Rabbit"}).json()
        assert tokens == {"tokens": loaded.vocab.encode("the White Rabbit").tolist(), "count": 16}
        back = local.post("/detokenize", json={"tokens": tokens["tokens"]}).json()
        assert back == {"prompt": "the White Rabbit"}
        assert local.post("/tokenize", json={"prompt": ""}).json() == {"tokens": [], "count": 0}

        unknown = local.post("/tokenize", json={"prompt": "the ✓"})
        assert unknown.status_code == 422 and unknown.json()["field"] == "prompt"
        assert unknown.json()["unknown_characters"] == ["✓"]
        for bad in ([0, len(loaded.vocab)], [-1]):
            refused = local.post("/detokenize", json={"tokens": bad})
            assert refused.status_code == 422 and refused.json()["field"] == "tokens"
            assert str(bad[-1]) in refused.json()["error"]
        assert local.post("/detokenize", json={"tokens": ["a"]}).json()["field"] == "tokens.0"
        assert local.post("/tokenize", json={"model": "gpt-4", "prompt": "a"}).status_code == 404


def test_tokenizer_info_and_add_special_tokens_as_lm_evaluation_harness_asks(app, loaded):
    with TestClient(app) as local:
        info = local.get("/tokenizer_info").json()
        assert info["vocab_size"] == len(loaded.vocab) and "eos_token" in info and info["eos_token"] is None
        asked = local.post("/tokenize", json={"prompt": "the", "add_special_tokens": False}).json()
        assert asked["tokens"] == loaded.vocab.encode("the").tolist()
        assert local.get("/tokenizer_info", params={"model": "nope"}).status_code == 404


@pytest.mark.parametrize(("settings", "param"), [
    ({"logprobs": 6}, "logprobs"),
    ({"logprobs": -1}, "logprobs"),
    ({"logit_bias": {"3": 2.0}}, "logit_bias"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"frequency_penalty": -0.5}, "frequency_penalty"),
    ({"suffix": "end"}, "suffix"),
])
def test_refused_fields_give_openai_s_error_shape(client, settings, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(**{"model": "tiny", "prompt": "the ", **settings})
    error = caught.value.body
    assert caught.value.status_code == 400 and error["type"] == "invalid_request_error"
    assert error["message"] and error["param"] == param


def test_a_records_model_refuses_logprobs_in_openai_s_shape(tmp_path_factory):
    with TestClient(create_app({"names": tiny_items_run(tmp_path_factory)}, LIMITS)) as local:
        reply = local.post("/v1/completions", json={"prompt": "ka", "max_tokens": 5, "logprobs": 1})
        assert local.post("/v1/completions", json={"prompt": "ka", "max_tokens": 5}).status_code == 200
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "logprobs"
    assert "charlstm score" in reply.json()["error"]["message"]
