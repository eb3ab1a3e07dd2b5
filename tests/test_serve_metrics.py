"""GET /metrics: Prometheus' text format, counting what the service did, on both generation paths."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[dev,serve]'")
pytest.importorskip("prometheus_client", reason="the serve extra is not installed")

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from _serving import SlowSteps, tiny_run, wait_until
from charlstm.serve.app import ServeLimits, create_app

LIMITS = ServeLimits(max_prompt_chars=40, max_length=300, max_num_samples=3, max_concurrent=3)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory)


def events(lines) -> Iterator[tuple[str, dict]]:
    """Server-Sent Event lines -> (event, data) pairs, as they arrive."""
    kind = "message"
    for line in lines:
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield kind, json.loads(line.removeprefix("data: "))


def scrape(client: TestClient) -> Samples:
    """GET /metrics, read by prometheus_client's own parser: {(sample name, sorted labels): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def requests(samples: Samples, route: str, status: int) -> float:
    return value(samples, "charlstm_http_requests_total", route=route, status=str(status))


def idle(client: TestClient) -> bool:
    return client.get("/healthz").json()["active_generations"] == 0


def traffic(client: TestClient) -> tuple[int, int]:
    """A request of each kind, and two refused; (characters generated, prompt characters read), as replied."""
    generated = prompt = 0
    whole = client.post("/v1/generate", json={"prompt": "the ", "length": 40, "seed": 1, "num_samples": 2})
    assert whole.status_code == 200, whole.text
    body = whole.json()
    generated += sum(map(len, body["texts"]))
    prompt += len(body["prompt"])
    with client.stream("POST", "/v1/generate/stream", json={"prompt": "a ", "length": 30, "seed": 2,
                                                            "stop": "e"}) as response:
        for kind, data in events(response.iter_lines()):
            if kind == "start":
                prompt += len(data["prompt"])
            elif kind == "text":
                generated += sum(map(len, data["delta"]))
    completion = client.post("/v1/completions", json={"prompt": ["the ", "and "], "max_tokens": 25, "seed": 3,
                                                      "echo": True})
    assert completion.status_code == 200, completion.text
    usage = completion.json()["usage"]
    echoed = sum(len(choice["text"]) for choice in completion.json()["choices"])
    assert echoed == usage["completion_tokens"] + usage["prompt_tokens"]  # an echoed prompt is not generated
    generated += usage["completion_tokens"]
    prompt += usage["prompt_tokens"]
    assert client.post("/v1/generate", json={"length": -1}).status_code == 422
    assert client.get("/nowhere").status_code == 404
    assert wait_until(lambda: idle(client))
    return generated, prompt


def assert_counted(samples: Samples, generated: int, prompt: int) -> None:
    for route, status in [("/v1/generate", 200), ("/v1/generate/stream", 200), ("/v1/completions", 200),
                          ("/v1/generate", 422), ("other", 404)]:
        assert requests(samples, route, status) == 1, (route, status)
    assert generated > 0 and value(samples, "charlstm_generated_characters_total", model="tiny") == generated
    assert value(samples, "charlstm_prompt_characters_total", model="tiny") == prompt
    assert value(samples, "charlstm_live_streams") == 0
    assert value(samples, "charlstm_queue_refusals_total") == 0


def test_metrics_count_what_the_batched_path_served(run_dir):
    with TestClient(create_app({"tiny": run_dir}, LIMITS)) as client:
        generated, prompt = traffic(client)
        samples = scrape(client)
    assert_counted(samples, generated, prompt)
    steps = value(samples, "charlstm_scheduler_step_seconds_count", model="tiny")
    assert steps >= 40  # the longest sample of the batched requests took 40 steps
    assert value(samples, "charlstm_scheduler_step_seconds_bucket", model="tiny", le="+Inf") == steps
    assert value(samples, "charlstm_scheduler_step_seconds_sum", model="tiny") > 0


def test_metrics_count_what_the_per_request_path_served(run_dir):
    with TestClient(create_app({"tiny": run_dir}, LIMITS, batching=False)) as client:
        generated, prompt = traffic(client)
        samples = scrape(client)
    assert_counted(samples, generated, prompt)
    assert value(samples, "charlstm_scheduler_step_seconds_count", model="tiny") == 0  # no scheduler here


def test_a_refusal_is_counted_and_live_streams_go_back_to_zero(run_dir, monkeypatch):
    SlowSteps(monkeypatch, delay=0.01)  # 300 characters at 10 ms a step: still running when refused
    with TestClient(create_app({"tiny": run_dir}, LIMITS)) as client:
        with client.stream("POST", "/v1/generate/stream", json={"length": 300, "num_samples": 3}) as busy:
            received = events(busy.iter_lines())  # held in a name: dropping it would hang up early
            assert next(kind for kind, _ in received if kind == "text")
            during = scrape(client)
            assert client.post("/v1/generate", json={"length": 5}).status_code == 503
        assert wait_until(lambda: idle(client))
        after = scrape(client)
    assert value(during, "charlstm_live_streams") == 3
    assert value(after, "charlstm_live_streams") == 0
    assert value(after, "charlstm_queue_refusals_total") == 1
    assert requests(after, "/v1/generate", 503) == 1
    assert requests(after, "/v1/generate/stream", 200) == 1
    assert requests(after, "/metrics", 200) == 1  # the first scrape; a response is counted as it begins


def test_counting_is_once_a_flush_and_once_a_step_never_once_a_character(run_dir, monkeypatch):
    with TestClient(create_app({"tiny": run_dir}, LIMITS)) as client:
        counter = client.app.state.service.models["tiny"].meters.generated
        told: list[float] = []
        inc = counter.inc

        def counted_inc(amount: float = 1) -> None:
            told.append(amount)
            inc(amount)

        monkeypatch.setattr(counter, "inc", counted_inc)
        before = scrape(client)
        texts = characters = 0
        with client.stream("POST", "/v1/generate/stream", json={"length": 300, "num_samples": 3}) as response:
            for kind, data in events(response.iter_lines()):
                if kind == "text":
                    texts += 1
                    characters += sum(map(len, data["delta"]))
        after = scrape(client)
    assert characters == 900 and sum(told) == 900
    assert len(told) == texts < 100  # one count per text event, each holding many characters
    steps = (value(after, "charlstm_scheduler_step_seconds_count", model="tiny")
             - value(before, "charlstm_scheduler_step_seconds_count", model="tiny"))
    assert steps == 300  # one observation per step of the 3 rows, not per character


def test_each_app_counts_in_a_registry_of_its_own(run_dir):
    with TestClient(create_app({"tiny": run_dir}, LIMITS)) as first, \
            TestClient(create_app({"tiny": run_dir}, LIMITS)) as second:
        assert first.post("/v1/generate", json={"length": 5}).status_code == 200
        assert requests(scrape(first), "/v1/generate", 200) == 1
        assert requests(scrape(second), "/v1/generate", 200) == 0
