"""The HTTP service through FastAPI's TestClient, one real server for disconnects, and the CLI."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[dev,serve]'")

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from _runs import train_window_run, write_text
from _serving import SlowSteps, running_server, tiny_run, wait_until
from charlstm.cli import app as cli_module
from charlstm.errors import ConfigError
from charlstm.generation.generators import generate_text
from charlstm.runs.loading import load_model
from charlstm.serve import app as serve
from charlstm.serve.app import ServeLimits, create_app, model_paths

LIMITS = ServeLimits(max_prompt_chars=40, max_length=300, max_num_samples=3, max_concurrent=2)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def app(run_dir):
    return create_app({"tiny": run_dir, "again": run_dir}, LIMITS)


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as client:
        yield client


@pytest.fixture
def slow(monkeypatch) -> SlowSteps:
    """Generation at 10 ms a character, so a stream is still running when the test acts."""
    return SlowSteps(monkeypatch, delay=0.01)


def events(lines) -> Iterator[tuple[str, dict]]:
    """Parse Server-Sent Event lines into (event, data) pairs, as they arrive."""
    kind = "message"
    for line in lines:
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield kind, json.loads(line.removeprefix("data: "))
            kind = "message"


def idle(client) -> bool:
    return client.get("/healthz").json()["active_generations"] == 0


# --- reading endpoints ---------------------------------------------------------------------------

def test_healthz(client):
    assert client.get("/healthz").json() == {
        "status": "ok", "models": ["tiny", "again"], "active_generations": 0, "max_concurrent": 2,
    }


def test_models_lists_names_default_and_limits(client):
    body = client.get("/v1/models").json()
    cards = body.pop("data")
    assert body == {"object": "list", "models": ["tiny", "again"], "default": "tiny", "limits": {
        "max_prompt_chars": 40, "max_length": 300, "max_num_samples": 3, "max_concurrent": 2}}
    assert [(c["id"], c["object"], c["owned_by"]) for c in cards] == [("tiny", "model", "charlstm"),
                                                                       ("again", "model", "charlstm")]


def test_model_facts(client, run_dir):
    loaded = load_model(run_dir)
    facts = client.get("/v1/model").json()
    assert facts["name"] == "tiny"
    assert facts["vocab"] == loaded.vocab.chars and facts["vocab_size"] == len(loaded.vocab)
    assert facts["parameters"] == loaded.model.num_parameters()
    assert facts["framing"] == "stream"
    assert facts["checkpoint"] == loaded.path.name
    assert facts["bits_per_char"] == {"split": "val", "value": facts["best_val"]["val_bits_per_char"]}
    assert facts["config"]["model"]["hidden_size"] == 16
    assert set(facts["config"]) == {"model", "train", "corpus"}
    assert client.get("/v1/model", params={"model": "again"}).json()["name"] == "again"


def test_unknown_model_is_404_naming_the_field(client):
    for response in (client.get("/v1/model", params={"model": "nope"}),
                     client.post("/v1/generate", json={"model": "nope"}),
                     client.post("/v1/generate/stream", json={"model": "nope"})):
        assert response.status_code == 404
        assert response.json()["field"] == "model" and "tiny" in response.json()["error"]


def test_unknown_path_and_wrong_method_are_json_errors(client):
    assert client.get("/v2/nothing").status_code == 404
    response = client.get("/v1/generate")
    assert response.status_code == 405 and response.json()["error"] == "Method Not Allowed"


def test_page_and_its_files_are_served_with_no_outside_links(client):
    page = client.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    for element in ('id="prompt"', 'id="temperature"', 'id="top-k"', 'id="top-p"', 'id="length"',
                    'id="generate"', 'id="stop"', 'id="output"', 'id="fact-params"', 'id="fact-bpc"'):
        assert element in page.text
    texts = [page.text]
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
        texts.append(response.text)
    assert not any("http://" in t or "https://" in t or "//cdn" in t for t in texts)


def test_the_schema_is_served_but_no_docs_page_that_would_need_a_cdn(client):
    for page in ("/docs", "/redoc"):
        assert client.get(page).status_code == 404
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/healthz", "/v1/models", "/v1/model", "/v1/generate", "/v1/generate/stream",
            "/v1/completions"} <= set(paths)


# --- generation ----------------------------------------------------------------------------------

@pytest.mark.parametrize("filters", [{"top_k": 10, "top_p": 0.9}, {"top_k": 10, "min_p": 0.1}])
def test_generate_matches_the_library_for_the_same_seed(client, run_dir, filters):
    settings = {"length": 40, "temperature": 0.8, **filters, "seed": 5, "num_samples": 2}
    body = client.post("/v1/generate", json={"prompt": "the ", **settings}).json()
    assert body["texts"] == generate_text(load_model(run_dir), "the ", **settings)
    assert body["model"] == "tiny" and body["prompt"] == "the " and body["seed"] == 5
    assert body["characters"] == 80 and body["elapsed_s"] > 0 and body["chars_per_s"] > 0


def test_a_missing_seed_is_drawn_and_reported_so_it_can_be_reused(client):
    first = client.post("/v1/generate", json={"prompt": "the", "length": 30}).json()
    again = client.post("/v1/generate", json={"prompt": "the", "length": 30, "seed": first["seed"]}).json()
    assert again["texts"] == first["texts"]


def test_top_k_1_equals_greedy_and_empty_prompt_starts_a_paragraph(client):
    greedy = client.post("/v1/generate", json={"greedy": True, "length": 20}).json()
    top1 = client.post("/v1/generate", json={"top_k": 1, "length": 20, "model": "again"}).json()
    assert greedy["texts"] == top1["texts"] and greedy["prompt"] == "\n"


def test_unknown_prompt_characters_are_422_listing_them(client):
    for path in ("/v1/generate", "/v1/generate/stream"):
        response = client.post(path, json={"prompt": "the é and ✓"})
        assert response.status_code == 422
        body = response.json()
        assert body["field"] == "prompt" and body["unknown_characters"] == ["é", "✓"]


def test_unknown_prompt_characters_follow_the_policy_the_request_names(client):
    dropped = client.post("/v1/generate", json={"prompt": "the é", "unknown": "drop", "length": 5}).json()
    assert dropped["prompt"] == "the "
    replaced = client.post("/v1/generate", json={"prompt": "a é", "unknown": "replace", "replacement": " ",
                                                 "length": 5}).json()
    assert replaced["prompt"] == "a  "


@pytest.mark.parametrize(("body", "field"), [
    ({"length": 301}, "length"),
    ({"length": -1}, "length"),
    ({"num_samples": 4}, "num_samples"),
    ({"num_samples": 0}, "num_samples"),
    ({"prompt": "x" * 41}, "prompt"),
    ({"prompt": 5}, "prompt"),
    ({"temperature": 0}, "temperature"),
    ({"temperature": -1.0}, "temperature"),
    ({"top_k": 0}, "top_k"),
    ({"top_p": 0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"min_p": 0}, "min_p"),
    ({"min_p": 1.5}, "min_p"),
    ({"seed": -1}, "seed"),
    ({"length": "ten"}, "length"),
    ({"greedy": "sometimes"}, "greedy"),
    ({"unknown": "ignore"}, "unknown"),
    ({"replacement": "ab"}, "replacement"),
    ({"unknown": "replace", "replacement": "é"}, "replacement"),
    ({"unknown": "replace"}, "replacement"),
    ({"prompt": "é", "unknown": "drop"}, "prompt"),
    ({"temprature": 0.5}, "temprature"),
    ([1, 2], "body"),
])
def test_bad_requests_are_422_naming_the_field(client, body, field):
    for path in ("/v1/generate", "/v1/generate/stream"):
        response = client.post(path, json=body)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["field"] == field and response.json()["error"]
        assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize("content", [b"{not json", b""])
def test_malformed_json_is_422(client, content):
    response = client.post("/v1/generate", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["field"] == "body"


def test_stream_sends_start_text_done_and_the_same_text_as_generate(client):
    request = {"prompt": "the ", "length": 120, "seed": 11, "num_samples": 2}
    with client.stream("POST", "/v1/generate/stream", json=request) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        found = list(events(response.iter_lines()))
    kinds = [kind for kind, _ in found]
    assert kinds[0] == "start" and kinds[-1] == "done" and set(kinds[1:-1]) == {"text"}
    assert found[0][1] == {"model": "tiny", "prompt": "the ", "seed": 11, "length": 120, "num_samples": 2}
    texts = ["".join(data["delta"][i] for kind, data in found if kind == "text") for i in range(2)]
    assert texts == client.post("/v1/generate", json=request).json()["texts"]
    assert found[-1][1]["characters"] == 240 and found[-1][1]["stopped"] is False


def test_a_client_that_leaves_a_stream_stops_its_generation(client, slow):
    with client.stream("POST", "/v1/generate/stream", json={"length": 300}) as response:
        # Held in a name: an iterator dropped mid-way closes the response, which would hang up early.
        received = events(response.iter_lines())
        assert next(kind for kind, _ in received if kind == "text")
        assert client.get("/healthz").json()["active_generations"] == 1
    assert wait_until(lambda: idle(client), timeout=3)
    assert slow.steps < 100  # 300 at 10 ms a step would take 3 s


def test_full_slots_give_503_with_retry_after(client, slow):
    with client.stream("POST", "/v1/generate/stream", json={"length": 300}) as first, \
            client.stream("POST", "/v1/generate/stream", json={"length": 300}) as second:
        assert first.status_code == second.status_code == 200
        for path in ("/v1/generate", "/v1/generate/stream"):
            response = client.post(path, json={"length": 5})
            assert response.status_code == 503 and response.headers["retry-after"] == "1"
            assert "busy" in response.json()["error"]
    assert wait_until(lambda: idle(client), timeout=3)
    assert client.post("/v1/generate", json={"length": 5}).status_code == 200


def test_real_server_keeps_answering_during_a_stream_and_stops_it_on_disconnect(app, slow):
    with running_server(app) as url:
        host, port = url.removeprefix("http://").split(":")
        stream = http.client.HTTPConnection(host, int(port), timeout=10)
        stream.request("POST", "/v1/generate/stream", body=json.dumps({"length": 300}),
                       headers={"Content-Type": "application/json"})
        response = stream.getresponse()
        assert response.status == 200
        while not response.readline().startswith(b"event: text"):
            pass
        # The stream is generating in a worker thread; the event loop still answers at once.
        health = http.client.HTTPConnection(host, int(port), timeout=10)
        started = time.perf_counter()
        health.request("GET", "/healthz")
        assert json.loads(health.getresponse().read())["active_generations"] == 1
        assert time.perf_counter() - started < 1.0
        stream.close()  # hang up mid-stream
        assert_generation_stops(health, slow)


def assert_generation_stops(health: http.client.HTTPConnection, slow: SlowSteps) -> None:
    """The server soon has no generation running, well before a 300-character one would end."""

    def stopped() -> bool:
        health.request("GET", "/healthz")
        return json.loads(health.getresponse().read())["active_generations"] == 0

    assert wait_until(stopped, timeout=5)
    assert slow.steps < 150  # 300 at 10 ms a step would take 3 s
    health.close()


def test_concurrent_requests_each_get_their_own_state(client):
    request = {"prompt": "the ", "length": 60, "seed": 3}
    first = client.post("/v1/generate", json=request)
    assert first.status_code == 200, first.text
    expected = first.json()["texts"]
    results: list[list[str]] = []

    def call() -> None:
        for _ in range(3):
            response = client.post("/v1/generate", json=request)
            if response.status_code == 200:  # 503 when both slots are taken is allowed here
                results.append(response.json().get("texts", response.text))

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results and all(texts == expected for texts in results), results


# --- set-up and the command line -----------------------------------------------------------------

def test_limits_and_models_are_checked(run_dir):
    with pytest.raises(ConfigError, match="max_length"):
        ServeLimits(max_length=0)
    with pytest.raises(ConfigError, match="at least one model"):
        create_app({})
    assert model_paths(run_dir, ["b=x/y"]) == {"tiny": run_dir, "b": Path("x/y")}
    for specs in (["noequals"], ["=path"], ["a=x", "a=y"]):
        with pytest.raises(ConfigError):
            model_paths(None, specs)


def test_cli_serve_passes_models_limits_and_a_loopback_default(monkeypatch, run_dir):
    calls = []
    monkeypatch.setattr(serve, "run_server", lambda models, limits, **kw: calls.append((models, limits, kw)))
    result = CliRunner().invoke(cli_module.app, ["serve", str(run_dir), "--model", f"two={run_dir}",
                                          "--max-length", "50", "--max-concurrent", "3"])
    assert result.exit_code == 0, result.output
    models, limits, options = calls[0]
    assert models == {"tiny": run_dir, "two": run_dir}
    assert limits == ServeLimits(max_length=50, max_concurrent=3)
    assert options["host"] == "127.0.0.1" and options["port"] == 8000 and options["batching"] is True
    CliRunner().invoke(cli_module.app, ["serve", str(run_dir), "--no-batching"])
    assert calls[1][2]["batching"] is False


@pytest.mark.parametrize(("args", "code"), [
    (["serve"], 2),
    (["serve", "--model", "nameonly"], 2),
    (["serve", "--model", "a=x", "--max-length", "0"], 2),
    (["serve", "no/such/run"], 4),
    (["serve", "--model", "a=x", "--port", "99999"], 2),
    (["serve", "--model", "a=x", "--port", "-1"], 2),
])
def test_cli_serve_errors_are_one_line_and_an_exit_code(args, code):
    result = CliRunner().invoke(cli_module.app, args)
    assert result.exit_code == code
    assert result.output.count("charlstm: error:") == 1 and "Traceback" not in result.output


# --- hostile requests ----------------------------------------------------------------------------

@pytest.mark.parametrize(("content", "field"), [
    (b'{"temperature": NaN}', "temperature"),
    (b'{"temperature": Infinity}', "temperature"),
    (b'{"top_p": -Infinity}', "top_p"),
    (b'{"prompt": "the \\ud800"}', "prompt"),
    (b'{"stop": ["\\udfff"]}', "stop"),
    (b'{"length": true}', "length"),
    (b'{"num_samples": 1.0}', "num_samples"),
    (b'{"stop": ["a", "b", "c", "d", "e"]}', "stop"),
    (b'{"stop": ""}', "stop"),
])
def test_hostile_values_are_a_json_422_not_a_500(client, content, field):
    for path in ("/v1/generate", "/v1/generate/stream"):
        response = client.post(path, content=content, headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        assert response.json()["field"].startswith(field) and response.json()["error"]


def test_a_huge_bad_field_gets_a_small_reply(client):
    response = client.post("/v1/generate", json={"prompt": "x" * 10_000_000, "length": "y" * 1_000_000})
    assert response.status_code == 422
    assert len(response.content) < 4_000 and "xxxx" not in response.text


def test_a_whole_request_whose_client_goes_stops_generating(app, monkeypatch):
    slow = SlowSteps(monkeypatch, delay=0.01)
    with running_server(app) as url:
        host, port = url.removeprefix("http://").split(":")
        whole = http.client.HTTPConnection(host, int(port), timeout=10)
        whole.request("POST", "/v1/generate", body=json.dumps({"length": 300}),
                      headers={"Content-Type": "application/json"})
        assert wait_until(lambda: slow.steps > 5, timeout=5)
        whole.close()  # hang up before the reply
        assert_generation_stops(http.client.HTTPConnection(host, int(port), timeout=10), slow)


def test_a_stop_sequence_in_the_native_api_is_reported(client, run_dir):
    full = generate_text(load_model(run_dir), "the ", length=200, seed=4)[0]
    body = client.post("/v1/generate", json={"prompt": "the ", "length": 200, "seed": 4,
                                             "stop": full[50:52]}).json()
    assert body["texts"][0] == full[: full.index(full[50:52])] and body["finish_reasons"] == ["stop"]


def test_more_samples_than_slots_is_422_not_a_wait_for_ever(client):
    response = client.post("/v1/generate", json={"num_samples": 3})
    assert response.status_code == 422 and response.json()["field"] == "num_samples"


def test_a_port_in_use_is_its_own_exit_code_and_one_line(run_dir):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli_module.app, ["serve", str(run_dir), "--port", str(port)])
    assert result.exit_code == 6, result.output
    assert result.output.count("charlstm: error:") == 1 and "Traceback" not in result.output
    assert f"127.0.0.1:{port}" in result.output


def test_the_service_s_connections_send_small_writes_at_once():
    import asyncio
    import socket

    listener = serve.listen("127.0.0.1", 0)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        nodelay = loop.create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport):
                conn = transport.get_extra_info("socket")
                nodelay.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        server = await loop.create_server(Probe, sock=listener)  # as uvicorn serves it
        _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
        value = await asyncio.wait_for(nodelay, 10)
        writer.close()
        server.close()
        return value

    # Nagle's algorithm off: an event written just after another goes out without waiting for
    # the client's delayed ACK (40 ms on a kept-alive connection before).
    assert asyncio.run(main()) != 0


def test_the_per_request_path_gives_the_batched_path_s_text(client, run_dir):
    request = {"prompt": "the ", "length": 80, "seed": 6, "num_samples": 2, "temperature": 0.9, "stop": "e t"}
    with TestClient(create_app({"tiny": run_dir}, LIMITS, batching=False)) as alone:
        assert alone.app.state.service.models["tiny"].scheduler is None
        per_request = alone.post("/v1/generate", json=request).json()
    batched = client.post("/v1/generate", json=request).json()
    assert per_request["texts"] == batched["texts"]
    assert per_request["finish_reasons"] == batched["finish_reasons"]


def test_a_window_model_is_served_on_the_per_request_path(tmp_path):
    run = train_window_run(tmp_path / "window", write_text(tmp_path / "t.txt"))
    with TestClient(create_app({"w": run}, LIMITS)) as local:
        assert local.app.state.service.models["w"].scheduler is None
        request = {"prompt": "the rabbit and the ", "length": 30, "seed": 2}
        body = local.post("/v1/generate", json=request).json()
    assert body["texts"] == generate_text(load_model(run), **request)
