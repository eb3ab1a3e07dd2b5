"""The service against a hostile world: its run changing on disk, absurd options, bad fields, HEAD."""

from __future__ import annotations

import http.client
import re
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[dev,serve]'")

import torch
import typer
from fastapi.testclient import TestClient

from _runs import invoke
from _serving import running_server, tiny_run
from charlstm.cli import app as cli_module
from charlstm.errors import ConfigError, ServiceError
from charlstm.serve import app as serve
from charlstm.serve import worker
from charlstm.serve.app import ServeLimits, create_app
from charlstm.serve.schemas import LIMIT_RANGES

LIMITS = ServeLimits(max_prompt_chars=40, max_length=300, max_num_samples=3, max_concurrent=6)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def client(run_dir):
    with TestClient(create_app({"tiny": run_dir}, LIMITS)) as client:
        yield client


@pytest.fixture
def no_loading(monkeypatch):
    """Loading a model fails the test: what is checked here must be refused before any is loaded."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(worker, "load_model", refuse)


@pytest.fixture
def no_serving(monkeypatch) -> list:
    """uvicorn returns at once (closing the listening socket); the apps it was given are listed."""
    apps = []

    def run(server, sockets):
        apps.append(server.config.app)
        for sock in sockets:
            sock.close()

    monkeypatch.setattr(serve.uvicorn.Server, "run", run)
    return apps


def one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("charlstm: error:")]
    assert len(lines) == 1, result.output
    return lines[0]


# --- 1. the run moves on while it is served --------------------------------------------------------

def prune(run: Path) -> None:
    """What `train --resume --keep-best 1` does to a served run: its checkpoints go, new ones come."""
    old = sorted(run.glob("*.safetensors"))
    for path in old:
        path.unlink()
    (run / "best-02-000150-1.2345.safetensors").write_bytes(b"not the checkpoint that was loaded")


def test_a_served_run_whose_checkpoints_are_pruned_is_still_listed_described_and_served(run_dir, tmp_path):
    run = shutil.copytree(run_dir, tmp_path / "run")
    with TestClient(create_app({"tiny": run}, LIMITS)) as local:
        listed, facts = local.get("/v1/models").json(), local.get("/v1/model").json()
        request = {"prompt": "the ", "length": 30, "seed": 8}
        before = local.post("/v1/generate", json=request).json()["texts"]
        prune(run)
        for path in ("/v1/models", "/v1/model", "/healthz", "/"):
            assert local.get(path).status_code == 200, path
        # The listing and the facts describe the model loaded, not what is on disk now.
        assert local.get("/v1/models").json() == listed and local.get("/v1/model").json() == facts
        assert local.post("/v1/generate", json=request).json()["texts"] == before


def test_the_openai_client_lists_a_pruned_run_s_model(run_dir, tmp_path):
    openai = pytest.importorskip("openai", reason="the openai client is a dev dependency")
    run = shutil.copytree(run_dir, tmp_path / "run")
    with running_server(create_app({"tiny": run}, LIMITS)) as url:
        prune(run)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=30)
        assert [m.id for m in client.models.list().data] == ["tiny"]
        reply = client.completions.create(model="tiny", prompt="the ", max_tokens=10, seed=1)
        assert len(reply.choices[0].text) == 10


# --- 2. every numeric option has a range -------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["--max-concurrent", "1000000000"],
    ["--max-concurrent", "0"],
    ["--max-num-samples", "1025"],
    ["--max-length", "100001"],
    ["--max-prompt-chars", "100001"],
    ["--max-prompt-chars", "-5"],
    ["--port", "65536"],
])
def test_out_of_range_serve_options_are_one_line_and_exit_2(run_dir, no_loading, no_serving, args):
    result = invoke("serve", run_dir, "--port", "0", *args)
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert args[0].removeprefix("--").replace("-", "_") in line.replace("-", "_")
    assert not no_serving


def test_each_limit_option_states_its_range_in_its_help():
    command = typer.main.get_command(cli_module.app).commands["serve"]
    helps = {param.name: param.help for param in command.params}
    for name, allowed in LIMIT_RANGES.items():
        assert f"{allowed.low} to {allowed.high}" in helps[name], name
        assert ServeLimits(**{name: allowed.low}) and ServeLimits(**{name: allowed.high})
        for wrong in (allowed.low - 1, allowed.high + 1):
            with pytest.raises(ConfigError, match=re.escape(f"{name} must be in {allowed}, not {wrong}")):
                ServeLimits(**{name: wrong})


# --- 3. the device -------------------------------------------------------------------------------

@pytest.mark.parametrize("device", [
    "foo", "cuda:99", "cuda:x",
    pytest.param("cuda", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here")),
])
def test_a_missing_or_unknown_device_is_one_line_before_any_model_loads(run_dir, no_loading, no_serving,
                                                                         device):
    result = invoke("serve", run_dir, "--port", "0", "--device", device)
    assert result.exit_code == 2, result.output
    assert device in one_error_line(result) and not no_serving


def test_device_auto_serves_on_the_device_it_picks(run_dir, no_serving):
    result = invoke("serve", run_dir, "--port", "0", "--device", "auto")
    assert result.exit_code == 0, result.output
    [app] = no_serving
    weights = app.state.service.models[run_dir.name].loaded.model.head.weight
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert weights.device.type == expected
    with TestClient(create_app({"tiny": run_dir}, LIMITS, device="auto")) as local:
        assert local.post("/v1/generate", json={"length": 5}).status_code == 200


# --- 4. a bad field's error names it plainly -----------------------------------------------------

REPRS = re.compile(r"function|functools|partial|0x[0-9a-f]|<|\[|Value error|item")
STOP_RULE = "a string or a list of at most 4 strings, each of 1 to 100 characters"
BAD_FIELDS = [
    {"stop": "x" * 101}, {"stop": ["a", "b", "c", "d", "e"]}, {"stop": 5}, {"stop": [""]}, {"stop": ""},
    {"stop": [5]}, {"stop": {"a": 1}}, {"prompt": 5}, {"prompt": ["a", 5]}, {"prompt": "x" * 41},
    {"model": 5}, {"replacement": "ab"}, {"replacement": ""}, {"replacement": 5}, {"temperature": "x"},
    {"top_k": 0}, {"top_p": 2}, {"seed": -1}, {"unknown": "zz"},
]
NATIVE_ONLY = [{"length": "ten"}, {"length": 10**30}, {"num_samples": 9}, {"greedy": 2}]
OPENAI_ONLY = [{"max_tokens": "x"}, {"n": 0}, {"logprobs": 6}, {"best_of": 5, "n": 2},
               {"presence_penalty": 1},
               {"frequency_penalty": "x"}, {"logit_bias": {"a": "b"}}, {"suffix": 5}, {"stream": "yes"},
               {"stream_options": {"include_usage": 5}}, {"prompt": ["a"] * 7}, {"echo": 1}]


def plain(field: str, message: str) -> None:
    assert re.fullmatch(r"[a-z_]+(\.[a-z_0-9]+)*", field), field
    assert message.startswith(f"{field}: ") and not REPRS.search(message), message


@pytest.mark.parametrize("body", BAD_FIELDS + NATIVE_ONLY)
def test_native_errors_name_the_field_plainly(client, body):
    for path in ("/v1/generate", "/v1/generate/stream"):
        response = client.post(path, json=body)
        assert response.status_code == 422, response.text
        error = response.json()
        assert error["field"] == next(iter(body))
        plain(error["field"], error["error"])
        assert not any(REPRS.search(d["msg"]) or REPRS.search(".".join(d["loc"])) for d in error["detail"])


@pytest.mark.parametrize("body", BAD_FIELDS + OPENAI_ONLY)
def test_openai_errors_name_the_param_plainly(client, body):
    response = client.post("/v1/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"].split(".")[0] in (next(iter(body)), "n")  # too many prompts: n x prompts
    plain(error["param"], error["message"])


@pytest.mark.parametrize("path", ["/v1/generate", "/v1/completions"])
def test_a_bad_stop_says_what_stop_takes(client, path):
    response = client.post(path, json={"stop": "x" * 101})
    body = response.json()
    message = body["error"]["message"] if path == "/v1/completions" else body["error"]
    assert message == f"stop: {STOP_RULE}"


# --- 5. an address that does not exist -----------------------------------------------------------

def test_a_host_that_does_not_resolve_is_named_with_exit_6_and_no_port_advice(run_dir, no_loading):
    result = invoke("serve", run_dir, "--host", "999.1.1.1", "--port", "0")
    assert result.exit_code == ServiceError.exit_code, result.output
    line = one_error_line(result)
    assert "999.1.1.1" in line and "no such host" in line and "--port" not in result.output


def test_an_address_of_another_machine_is_named():
    nonlocal_bind = Path("/proc/sys/net/ipv4/ip_nonlocal_bind")
    if nonlocal_bind.exists() and nonlocal_bind.read_text().strip() != "0":
        pytest.skip("this machine lets a server bind any address")
    with pytest.raises(ServiceError, match=r"192\.0\.2\.1: it is not an address of this machine") as caught:
        serve.listen("192.0.2.1", 0)  # TEST-NET-1: documentation only, never a machine's own
    assert "--port" not in (caught.value.hint or "")


# --- 6. HEAD ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/healthz", "/v1/models", "/v1/model", "/openapi.json",
                                  "/static/app.js"])
def test_head_is_answered_like_get_without_a_body(client, path):
    got, head = client.get(path), client.head(path)
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    for header in ("content-type", "content-length", "content-security-policy"):
        assert head.headers.get(header) == got.headers.get(header), header


def test_head_where_get_is_refused_is_refused_alike(client, run_dir):
    assert client.head("/v1/generate").status_code == client.get("/v1/generate").status_code == 405
    assert client.head("/nothing").status_code == 404
    with running_server(create_app({"tiny": run_dir}, LIMITS)) as url:
        host, port = url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.request("HEAD", "/")
        response = connection.getresponse()
        assert response.status == 200 and response.read() == b""
        connection.close()


@pytest.mark.parametrize("filters", [{}, {"top_p": 0.9}, {"top_k": 3, "top_p": 0.5}, {"min_p": 0.01}])
def test_a_tiny_temperature_serves_the_greedy_text_in_both_apis(client, filters):
    body = {"prompt": "the ", "length": 60, "seed": 2}
    greedy = client.post("/v1/generate", json={**body, "greedy": True}).json()["texts"]
    tiny = client.post("/v1/generate", json={**body, "temperature": 1e-39, **filters}).json()["texts"]
    assert tiny == greedy
    completion = {"model": "tiny", "prompt": "the ", "max_tokens": 60, "seed": 2, **filters}
    openai_greedy = client.post("/v1/completions", json={**completion, "temperature": 0}).json()
    openai_tiny = client.post("/v1/completions", json={**completion, "temperature": 1e-39}).json()
    assert [c["text"] for c in openai_tiny["choices"]] == [c["text"] for c in openai_greedy["choices"]]
    assert openai_tiny["choices"][0]["text"] == greedy[0]
