"""OpenAI's completions API, spoken to by the official ``openai`` client against a real server."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[dev,serve]'")
pytest.importorskip("openai", reason="the openai client is a dev dependency")

import openai
from fastapi.testclient import TestClient

from _reference import cut_at_stop
from _serving import running_server, tiny_run
from charlstm.generation.generators import generate_text
from charlstm.generation.sampling import sample_seed
from charlstm.runs.loading import LoadedModel, load_model
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


def test_models_are_listed_in_openai_s_shape(client):
    assert [m.id for m in client.models.list().data] == ["tiny"]


def test_a_completion_is_the_library_s_text_for_the_same_seed(client, loaded):
    reply = client.completions.create(model="tiny", prompt="the ", max_tokens=50, temperature=0.7, seed=3)
    [choice] = reply.choices
    assert choice.text == generate_text(loaded, "the ", length=50, temperature=0.7, seed=3)[0]
    assert choice.index == 0 and choice.finish_reason == "length"
    assert reply.object == "text_completion" and reply.model == "tiny" and reply.id.startswith("cmpl-")
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (4, 50, 54)


def test_n_choices_and_a_list_of_prompts(client, loaded):
    reply = client.completions.create(model="tiny", prompt=["the ", "and "], n=2, max_tokens=30, seed=9)
    assert [c.index for c in reply.choices] == [0, 1, 2, 3]
    for p, prompt in enumerate(["the ", "and "]):
        expected = generate_text(loaded, prompt, length=30, num_samples=2, seed=sample_seed(9, p))
        assert [c.text for c in reply.choices[2 * p : 2 * p + 2]] == expected
    assert reply.usage.prompt_tokens == 8 and reply.usage.completion_tokens == 120


def test_a_stop_sequence_ends_the_text_before_it_with_finish_reason_stop(client, loaded):
    full = generate_text(loaded, "the ", length=200, seed=4)[0]
    stop = full[30:33]
    reply = client.completions.create(model="tiny", prompt="the ", max_tokens=200, seed=4,
                                      stop=[stop, "\x00"])
    assert reply.choices[0].text == cut_at_stop(full, [stop])[0]
    assert reply.choices[0].finish_reason == "stop"


def test_streamed_chunks_add_up_to_the_whole_completion(client):
    settings = {"model": "tiny", "prompt": "she ", "max_tokens": 120, "seed": 5, "n": 2, "stop": "\n\n"}
    whole = client.completions.create(**settings)
    texts, reasons = ["", ""], [None, None]
    for chunk in client.completions.create(**settings, stream=True):
        for choice in chunk.choices:
            texts[choice.index] += choice.text
            reasons[choice.index] = choice.finish_reason or reasons[choice.index]
    assert texts == [c.text for c in whole.choices]
    assert reasons == [c.finish_reason for c in whole.choices]


def test_stream_ends_with_done_and_can_report_usage(app):
    body = {"prompt": "the ", "max_tokens": 10, "stream": True, "stream_options": {"include_usage": True}}
    with TestClient(app) as local, local.stream("POST", "/v1/completions", json=body) as r:
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    assert '"usage": {"prompt_tokens": 4, "completion_tokens": 10, "total_tokens": 14}' in lines[-2]


def test_temperature_zero_is_greedy_and_echo_puts_the_prompt_first(client, loaded):
    reply = client.completions.create(model="tiny", prompt="the ", max_tokens=25, temperature=0, echo=True)
    assert reply.choices[0].text == "the " + generate_text(loaded, "the ", length=25, greedy=True)[0]


def test_charlstm_s_own_settings_go_in_the_extra_body(client, loaded):
    reply = client.completions.create(model="tiny", prompt="the ", max_tokens=20, seed=2,
                                      extra_body={"top_k": 3})
    assert reply.choices[0].text == generate_text(loaded, "the ", length=20, seed=2, top_k=3)[0]


def test_min_p_takes_vllm_s_name(client, loaded):
    reply = client.completions.create(model="tiny", prompt="the ", max_tokens=30, seed=3, temperature=1.5,
                                      extra_body={"min_p": 0.3})
    expected = generate_text(loaded, "the ", length=30, seed=3, temperature=1.5, min_p=0.3)[0]
    assert reply.choices[0].text == expected
    best = client.completions.create(model="tiny", prompt="the ", max_tokens=30, extra_body={"min_p": 1})
    assert best.choices[0].text == generate_text(loaded, "the ", length=30, greedy=True)[0]  # only the best
    off = client.completions.create(model="tiny", prompt="the ", max_tokens=30, seed=3, temperature=1.5,
                                    extra_body={"min_p": 0})  # vLLM's "off"
    assert off.choices[0].text == generate_text(loaded, "the ", length=30, seed=3, temperature=1.5)[0]


@pytest.mark.parametrize(("settings", "param"), [
    ({"max_tokens": 301}, "max_tokens"),
    ({"temperature": 2.5}, "temperature"),
    ({"n": 4}, "n"),
    ({"logprobs": 6}, "logprobs"),  # 0-5 are served (test_serve_logprobs.py)
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"best_of": 3, "n": 2}, "best_of"),  # a multiple of n
    ({"suffix": "end"}, "suffix"),
    ({"prompt": ["a", "b", "c"], "n": 3}, "n"),
    ({"prompt": "x" * 41}, "prompt"),
])
def test_bad_fields_are_400_in_openai_s_error_shape(client, settings, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(**{"model": "tiny", "prompt": "the ", **settings})
    error = caught.value.body
    assert caught.value.status_code == 400 and error["type"] == "invalid_request_error"
    assert error["message"] and error["param"] == param


def test_unknown_characters_and_an_unknown_model_in_openai_s_shape(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="tiny", prompt="the ✓")
    assert caught.value.body["param"] == "prompt" and "✓" in caught.value.body["message"]
    with pytest.raises(openai.NotFoundError) as missing:
        client.completions.create(model="gpt-4", prompt="the ")
    assert missing.value.body["code"] == "model_not_found" and missing.value.body["param"] == "model"
