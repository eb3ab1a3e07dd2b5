"""Beam search, best-of and the repetition control through both HTTP APIs: the library's text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[dev,serve]'")
pytest.importorskip("openai", reason="the openai client is a dev dependency")

import openai
from fastapi.testclient import TestClient

from _serving import running_server, tiny_items_run, tiny_run
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
def app(run_dir, tmp_path_factory):
    return create_app({"tiny": run_dir, "names": tiny_items_run(tmp_path_factory)}, LIMITS)


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as client:
        yield client


@pytest.fixture(scope="module")
def openai_client(app):
    with running_server(app) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=30)


def idle(client) -> bool:
    return client.get("/healthz").json()["active_generations"] == 0


@pytest.mark.parametrize("settings", [
    {"beam": 3, "num_samples": 2}, {"beam": 1}, {"best_of": 3, "seed": 4, "temperature": 1.3},
    {"best_of": 2, "num_samples": 2, "seed": 5}, {"dry_multiplier": 1.0, "dry_allowed_length": 4, "seed": 6},
    {"greedy": True, "dry_multiplier": 0.8, "dry_allowed_length": 6},
])
def test_the_native_api_gives_the_librarys_text(client, loaded, settings):
    body = client.post("/v1/generate", json={"prompt": "the ", "length": 80, **settings})
    assert body.status_code == 200, body.text
    assert body.json()["texts"] == generate_text(loaded, "the ", length=80, **settings)
    assert idle(client)


def test_a_beam_ends_at_a_stop_sequence_and_streams_whole(client, loaded):
    greedy = generate_text(loaded, "the ", length=60, greedy=True)[0]
    stop = greedy[10:12]
    body = client.post("/v1/generate", json={"prompt": "the ", "length": 60, "beam": 1, "stop": stop}).json()
    assert body["texts"] == [greedy[: greedy.index(stop)]] and body["finish_reasons"] == ["stop"]
    with client.stream("POST", "/v1/generate/stream", json={"prompt": "the ", "length": 40, "beam": 2}) as r:
        data = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    deltas = [d["delta"] for d in data if "delta" in d]
    assert deltas == [generate_text(loaded, "the ", length=40, beam=2)]  # one event: known at the end


@pytest.mark.parametrize("body, field, message", [
    ({"beam": 2, "top_k": 3}, None, "top_k"),
    ({"beam": 2, "num_samples": 3}, None, "num_samples"),
    ({"best_of": 3, "num_samples": 3}, "num_samples", "best_of 3 is more than the 6"),
    ({"beam": 65}, "beam", None),
    ({"dry_base": 1.0}, "dry_base", None),
    ({"model": "names", "beam": 2}, "beam", "--items --beam"),
])
def test_what_a_search_cannot_serve_is_422(client, body, field, message):
    response = client.post("/v1/generate", json={"length": 10, **body})
    assert response.status_code == 422, response.text
    error = response.json()
    assert field is None or error["field"] == field
    assert message is None or message in error["error"]
    assert idle(client)


def test_openai_best_of_and_beam_search_and_dry(openai_client, loaded):
    best = openai_client.completions.create(model="tiny", prompt="the ", max_tokens=40, n=2, best_of=4,
                                            seed=3, temperature=1.2)
    assert [c.text for c in best.choices] == generate_text(
        loaded, "the ", length=40, num_samples=2, best_of=2, seed=sample_seed(3, 0), temperature=1.2)
    beam = openai_client.completions.create(model="tiny", prompt="the ", max_tokens=40, n=2, best_of=3,
                                            extra_body={"use_beam_search": True}, logprobs=1)
    assert [c.text for c in beam.choices] == generate_text(loaded, "the ", length=40, num_samples=2, beam=3)
    assert all(len(c.logprobs.tokens) == 40 for c in beam.choices)
    dry = openai_client.completions.create(model="tiny", prompt="the ", max_tokens=60, temperature=0,
                                           extra_body={"dry_multiplier": 0.8, "dry_allowed_length": 6})
    assert dry.choices[0].text == generate_text(loaded, "the ", length=60, greedy=True, dry_multiplier=0.8,
                                                dry_allowed_length=6)[0]
    off = openai_client.completions.create(model="tiny", prompt="the ", max_tokens=60, temperature=0,
                                           extra_body={"dry_multiplier": 0})  # llama.cpp's "off"
    assert off.choices[0].text == generate_text(loaded, "the ", length=60, greedy=True)[0]
