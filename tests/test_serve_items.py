"""The service with a model of a list of things: whole items, labels, new_only, OpenAI's choices."""

from __future__ import annotations

import dataclasses
import http.client
import json
import re
import shutil
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[dev,serve]'")

from fastapi.testclient import TestClient

from _serving import SlowSteps, running_server, tiny_items_run, tiny_run, wait_until
from charlstm.config.sample import SampleConfig
from charlstm.generation.items import NEW_ONLY_DRAWS, generate_items, training_items
from charlstm.generation.sampling import sample_seed
from charlstm.runs.loading import load_model
from charlstm.serve.app import ServeLimits, create_app
from charlstm.serve.jobs import ItemEnds

LIMITS = ServeLimits(max_prompt_chars=40, max_length=300, max_num_samples=8, max_concurrent=16)
SYMBOLS = re.compile("[\x00-\x03\ue000-\uf8ff]")  # start, end and label symbols: never shown


@pytest.fixture(scope="module")
def names(tmp_path_factory) -> Path:
    return tiny_items_run(tmp_path_factory)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    return tiny_items_run(tmp_path_factory, labelled=True)


@pytest.fixture(scope="module", params=[True, False], ids=["batched", "per-request"])
def client(request, names, labelled, tmp_path_factory):
    app = create_app({"names": names, "sizes": labelled, "text": tiny_run(tmp_path_factory)}, LIMITS,
                     batching=request.param)
    with TestClient(app) as client:
        yield client


def generate(client, **body) -> dict:
    response = client.post("/v1/generate", json={"length": 200, **body})
    assert response.status_code == 200, response.text
    return response.json()


def events(response) -> list[tuple[str, dict]]:
    kind, found = "message", []
    for line in response.iter_lines():
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            found.append((kind, json.loads(line.removeprefix("data: "))))
    return found


def idle(client) -> bool:
    return client.get("/healthz").json()["active_generations"] == 0


def library(run: Path, n: int, **settings) -> list:
    """generate_items' items for the same seed and settings (every one ends well within length)."""
    options = {key: settings.pop(key) for key in ("prompt", "labels", "new_only") if key in settings}
    return generate_items(load_model(run), n, SampleConfig(**settings), **options).items


@pytest.mark.parametrize(("model", "body"), [
    ("names", {"seed": 3}),
    ("names", {"seed": 4, "prompt": "ka", "temperature": 0.7}),
    ("sizes", {"seed": 5}),  # labels drawn as often as in training
    ("sizes", {"seed": 6, "label": ["small", "big", "big"]}),  # taken in turn
])
def test_items_are_the_librarys_for_the_same_seed(client, names, labelled, model, body):
    got = generate(client, model=model, items=7, **body)
    settings = {("labels" if key == "label" else key): value for key, value in body.items()}
    run = names if model == "names" else labelled
    expected = library(run, 7, **settings)
    # A start symbol drawn inside an item (tiny models draw some) is left out by both.
    assert [item["text"] for item in got["items"]] == [item.text for item in expected]
    assert not any(SYMBOLS.search(item.text) for item in expected)
    assert [item["label"] for item in got["items"]] == [item.label for item in expected]
    known = training_items(load_model(run))
    assert [item["novel"] for item in got["items"]] == [item.novel for item in expected]
    assert [item["novel"] for item in got["items"]] == [item["text"] not in known for item in got["items"]]
    prefix = body.get("prompt", "")
    assert got["prompt"] == prefix and got["texts"] == [item["text"][len(prefix):] for item in got["items"]]
    assert got["finish_reasons"] == ["stop"] * 7 and all(item["complete"] for item in got["items"])
    assert got["drawn"] == 7 and got["new"] == sum(item["novel"] for item in got["items"])
    assert got["characters"] == sum(map(len, got["texts"]))
    assert idle(client)


def test_items_drawn_amid_other_requests_are_the_same(client):
    """Rows join and leave the batch as items end; a request's items do not depend on what runs beside."""
    requests = [{"model": "sizes", "items": 5, "seed": 21, "temperature": 1.3},
                {"model": "names", "items": 3, "seed": 22, "prompt": "d"},
                {"model": "sizes", "items": 8, "seed": 23, "label": "big", "new_only": True}]
    expected = [generate(client, **body)["items"] for body in requests]
    results: list[tuple[int, list]] = []

    def call(k: int) -> None:
        for _ in range(3):
            results.append((k, generate(client, **requests[k])["items"]))

    threads = [threading.Thread(target=call, args=(k,)) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 9 and all(items == expected[k] for k, items in results)
    assert idle(client)


def test_a_label_gives_items_of_that_label(client):
    got = generate(client, model="sizes", items=5, label="small", seed=1)
    assert {item["label"] for item in got["items"]} == {"small"}
    alternating = generate(client, model="sizes", items=4, label=["big", "small"], seed=1)
    # Taken in turn, and listed by label as the library lists them: its draw is one group per label.
    assert [item["label"] for item in alternating["items"]] == ["big", "big", "small", "small"]


def test_num_samples_is_the_number_of_items_when_items_is_left_out(client):
    assert len(generate(client, model="names", num_samples=3, seed=2)["items"]) == 3
    response = client.post("/v1/generate", json={"model": "names", "items": 3, "num_samples": 2})
    assert response.status_code == 422 and response.json()["field"] == "num_samples"


def test_an_item_cut_at_length_says_so_and_no_symbol_is_ever_shown(client):
    # At temperature 50 the draws are near uniform: start and label symbols come up inside items.
    for model in ("names", "sizes"):
        got = generate(client, model=model, items=8, length=25, temperature=50.0, seed=9)
        assert "length" in got["finish_reasons"]
        for item, reason, text in zip(got["items"], got["finish_reasons"], got["texts"], strict=True):
            assert not SYMBOLS.search(item["text"]) and item["text"] == text
            assert item["complete"] == (reason == "stop") and len(text) <= 25
        with client.stream("POST", "/v1/generate/stream", json={"model": model, "items": 8, "length": 25,
                                                                "temperature": 50.0, "seed": 9}) as response:
            streamed = events(response)
        assert not any(SYMBOLS.search(json.dumps(data, ensure_ascii=False)) for _, data in streamed)


def test_unknown_label_is_a_422_listing_the_models_labels(client):
    response = client.post("/v1/generate", json={"model": "sizes", "items": 2, "label": ["big", "huge"]})
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "label" and "'huge'" in body["error"] and "'big', 'small'" in body["error"]
    response = client.post("/v1/generate", json={"model": "names", "items": 2, "label": "big"})
    assert response.status_code == 422 and response.json()["field"] == "label"
    assert "without labels" in response.json()["error"]
    assert idle(client)


@pytest.mark.parametrize("body", [{"items": 2}, {"label": "big"}, {"new_only": True}])
def test_a_model_of_running_text_refuses_items_label_and_new_only(client, body):
    response = client.post("/v1/generate", json={"model": "text", **body})
    assert response.status_code == 422
    error = response.json()
    assert error["field"] == next(iter(body)) and "running text" in error["error"]


@pytest.mark.parametrize(("body", "field"), [
    ({"items": 9}, "items"), ({"items": 0}, "items"), ({"label": []}, "label"), ({"label": 3}, "label"),
    ({"prompt": "ka\x03"}, "prompt"), ({"prompt": "k\ue000"}, "prompt"),
])
def test_bad_items_fields_are_422_naming_them(client, body, field):
    response = client.post("/v1/generate", json={"model": "sizes", **body})
    assert response.status_code == 422 and response.json()["field"] == field


def test_new_only_keeps_drawing_until_it_has_enough_new_items(client):
    app = client.app
    served = app.state.service.models["names"]
    first = generate(client, model="names", items=4, seed=5)["items"]
    known = frozenset({first[0]["text"], first[2]["text"]})
    app.state.service.models["names"] = dataclasses.replace(served, known=known)
    try:
        got = generate(client, model="names", items=4, seed=5, new_only=True)
        assert [item["text"] for item in got["items"][:2]] == [first[1]["text"], first[3]["text"]]
        assert len(got["items"]) == 4 and all(item["novel"] for item in got["items"])
        assert got["drawn"] >= 6 and got["new"] >= 4
        # Greedy draws the same item each time: once it is known, no draw is new, up to the bound.
        greedy = generate(client, model="names", items=1, greedy=True)["items"][0]["text"]
        app.state.service.models["names"] = dataclasses.replace(served, known=frozenset({greedy}))
        none = generate(client, model="names", items=2, greedy=True, new_only=True)
        assert none["items"] == [] and none["drawn"] == NEW_ONLY_DRAWS * 2 and none["new"] == 0
    finally:
        app.state.service.models["names"] = served
    assert idle(client)


def test_new_only_streams_only_kept_items(client):
    with client.stream("POST", "/v1/generate/stream",
                       json={"model": "names", "items": 3, "new_only": True, "seed": 2}) as response:
        streamed = events(response)
    kinds = [kind for kind, _ in streamed]
    assert kinds[0] == "start" and kinds[-1] == "done" and "text" not in kinds
    items = [data for kind, data in streamed if kind == "item"]
    done = streamed[-1][1]
    assert [item["index"] for item in items] == list(range(len(done["items"])))
    assert all(item["novel"] for item in items) and done["drawn"] >= len(items)


def test_the_stream_gives_text_as_it_comes_then_each_item(client):
    body = {"model": "sizes", "items": 5, "prompt": "ba", "seed": 8}
    with client.stream("POST", "/v1/generate/stream", json=body) as response:
        streamed = events(response)
    start, done = streamed[0][1], streamed[-1][1]
    assert start["items"] == 5 and start["prompt"] == "ba" and start["new_only"] is False
    texts = [""] * 5
    for kind, data in streamed:
        if kind == "text":
            texts = [t + d for t, d in zip(texts, data["delta"], strict=True)]
    whole = generate(client, **body)
    assert texts == whole["texts"] and done["items"] == whole["items"]
    items = [data for kind, data in streamed if kind == "item"]
    assert [(i["text"], i["label"]) for i in items] == [(i["text"], i["label"]) for i in whole["items"]]
    assert done["finish_reasons"] == whole["finish_reasons"] and done["drawn"] == 5


def test_completions_give_one_item_per_choice_ending_with_stop(client, names):
    body = {"model": "names", "prompt": ["ka", "bo"], "n": 3, "max_tokens": 100, "seed": 11}
    got = client.post("/v1/completions", json=body).json()
    assert [c["finish_reason"] for c in got["choices"]] == ["stop"] * 6
    for p, prompt in enumerate(body["prompt"]):
        expected = library(names, 3, seed=sample_seed(11, p), prompt=prompt)
        assert [c["text"] for c in got["choices"][3 * p : 3 * p + 3]] == [i.text[2:] for i in expected]
    echoed = client.post("/v1/completions", json={**body, "echo": True}).json()
    assert [c["text"] for c in echoed["choices"]] == [body["prompt"][c["index"] // 3] + c["text"]
                                                      for c in got["choices"]]
    short = client.post("/v1/completions", json={**body, "max_tokens": 2}).json()
    assert [c["text"] for c in short["choices"]] == [c["text"][:2] for c in got["choices"]]
    assert [c["finish_reason"] for c in short["choices"]] == [
        "length" if len(c["text"]) >= 2 else "stop" for c in got["choices"]]
    assert got["usage"]["completion_tokens"] == sum(len(c["text"]) for c in got["choices"])


def test_streamed_completions_are_the_same_items(client):
    body = {"model": "sizes", "prompt": "", "n": 4, "max_tokens": 100, "seed": 12, "temperature": 1.5}
    whole = client.post("/v1/completions", json=body).json()
    texts, reasons = [""] * 4, [None] * 4
    with client.stream("POST", "/v1/completions", json={**body, "stream": True}) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                for choice in json.loads(line.removeprefix("data: "))["choices"]:
                    texts[choice["index"]] += choice["text"]
                    reasons[choice["index"]] = choice["finish_reason"] or reasons[choice["index"]]
    assert texts == [c["text"] for c in whole["choices"]]
    assert reasons == [c["finish_reason"] for c in whole["choices"]]
    assert not any(SYMBOLS.search(text) for text in texts)


def test_model_facts_say_whether_a_model_is_a_list_and_its_labels(client, labelled):
    facts = client.get("/v1/model", params={"model": "sizes"}).json()
    loaded = load_model(labelled)
    assert facts["items"] == {"format": "csv", "labels": ["big", "small"],
                              "label_counts": loaded.meta.items.label_counts, "training_list": True}
    assert facts["framing"] == "items"
    assert client.get("/v1/model", params={"model": "text"}).json()["items"] is None


def test_a_checkpoint_away_from_its_run_marks_no_novelty_and_refuses_new_only(names, tmp_path):
    checkpoint = tmp_path / "names.safetensors"
    shutil.copy(load_model(names).path, checkpoint)
    app = create_app({"alone": checkpoint}, LIMITS)
    with TestClient(app) as client:
        assert client.get("/v1/model").json()["items"]["training_list"] is False
        got = generate(client, items=3, seed=1)
        assert [item["novel"] for item in got["items"]] == [None] * 3 and got["new"] is None
        response = client.post("/v1/generate", json={"items": 2, "new_only": True})
        assert response.status_code == 422 and response.json()["field"] == "new_only"


def test_training_items_are_read_once_at_start_up(client, names):
    assert client.app.state.service.models["names"].known == frozenset(training_items(load_model(names)))


@pytest.mark.parametrize("batching", [True, False], ids=["batched", "per-request"])
def test_a_client_that_goes_stops_the_draws(names, monkeypatch, batching):
    slow = SlowSteps(monkeypatch, delay=0.01)
    app = create_app({"names": names}, LIMITS, batching=batching)
    service = app.state.service
    served = service.models["names"]
    # Greedy items that are all known: new_only would draw 50 x 2 items, 10 ms a character.
    [item] = generate_items(served.loaded, 1, SampleConfig(greedy=True), known=set()).items
    greedy = SYMBOLS.sub("", item.text)
    service.models["names"] = dataclasses.replace(served, known=frozenset({greedy}))
    with running_server(app) as url:
        host, port = url.removeprefix("http://").split(":")
        stream = http.client.HTTPConnection(host, int(port), timeout=10)
        body = {"items": 2, "greedy": True, "new_only": True, "length": 300}
        stream.request("POST", "/v1/generate/stream", body=json.dumps(body),
                       headers={"Content-Type": "application/json"})
        response = stream.getresponse()
        assert response.status == 200 and response.readline() == b"event: start\n"
        assert wait_until(lambda: slow.steps > 2 * len(greedy) + 4, timeout=5)  # into its second draw
        stream.close()
        assert wait_until(lambda: service.active == 0, timeout=5)
        steps = slow.steps
        time.sleep(0.3)
        assert slow.steps == steps and steps < 20 * (len(greedy) + 1)  # no draw began after it went


def test_item_ends_hide_symbols_and_keep_a_stop_sequence_begun_but_not_finished():
    ends = ItemEnds(["ab"], 2)
    shown = [ends.feed(0, ch) for ch in "xa\x02\ue001a\x03z"]
    assert "".join(shown) == "xaa" and ends.reasons[0] == "end" and ends.stopped(0)
    assert "".join(ends.feed(1, ch) for ch in "ab") == "" and ends.reasons[1] == "stop"
    assert ends.finish_reasons() == ["end", "stop"]
