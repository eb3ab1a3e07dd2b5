"""Export: the ONNX single-step graph generates as charlstm does; safetensors carries everything."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from charlstm import train
from charlstm.cli.app import app
from charlstm.errors import ConfigError
from charlstm.interop.export import export
from charlstm.runs.loading import load_model

TINY = {"max_steps": 3, "eval_every": 3, "hidden_size": 16, "num_layers": 2, "embedding_size": 8,
        "seq_len": 16, "batch_size": 4}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export")
    (root / "t.txt").write_text("the cat sat on the mat, and the dog ran past the door. " * 40)
    train([root / "t.txt"], out_dir=root / "run", **TINY)
    return root / "run"


def test_onnx_step_matches_pytorch_for_a_sequence_then_single_steps(run_dir, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    loaded = load_model(run_dir)
    path = export(loaded, "onnx", tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path))
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["charlstm_vocab"]) == loaded.vocab.to_list()
    assert json.loads((tmp_path / "model.vocab.json").read_text())["vocab"] == loaded.vocab.to_list()

    for batch in (1, 3):
        prompt = torch.randint(0, len(loaded.vocab), (batch, 7))
        h = np.zeros((2, batch, 16), np.float32)
        logits, h, c = session.run(None, {"ids": prompt.numpy(), "h": h, "c": h.copy()})
        with torch.no_grad():
            expected, state = loaded.model(prompt)
        np.testing.assert_allclose(logits, expected[:, -1].numpy(), atol=1e-5)
        for _ in range(5):  # then one character at a time, the state passed back in
            step = expected[:, -1].argmax(-1, keepdim=True)
            logits, h, c = session.run(None, {"ids": step.numpy(), "h": h, "c": c})
            with torch.no_grad():
                expected, state = loaded.model(step, state)
            np.testing.assert_allclose(logits, expected[:, -1].numpy(), atol=1e-5)
            np.testing.assert_allclose(h, state[0].numpy(), atol=1e-5)


def test_safetensors_export_is_weights_config_and_vocab_only(run_dir, tmp_path):
    loaded = load_model(run_dir)
    path = export(loaded, "safetensors", tmp_path / "model.safetensors")
    with safe_open(str(path), framework="pt") as f:
        names = list(f.keys())
        meta = json.loads(f.metadata()["charlstm"])
    assert all(n.startswith(("model/", "rng/")) for n in names)  # no optimizer moments
    assert meta["vocab"] == loaded.vocab.to_list() and "model_config" in meta
    again = load_model(path)
    ids = torch.randint(0, len(loaded.vocab), (2, 5))
    with torch.no_grad():
        torch.testing.assert_close(again.model(ids)[0], loaded.model(ids)[0])
    assert path.stat().st_size < (run_dir / "last.safetensors").stat().st_size


def test_unknown_format_is_a_setting_error(run_dir, tmp_path):
    with pytest.raises(ConfigError, match="onnx, safetensors"):
        export(load_model(run_dir), "tflite", tmp_path / "m")
    args = ["export", str(run_dir), "--format", "tflite", "--out", str(tmp_path / "m")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "format must be" in result.output


def test_cli_exports_safetensors(run_dir, tmp_path):
    out = tmp_path / "m.safetensors"
    result = CliRunner().invoke(app, ["export", str(run_dir), "--format", "safetensors", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert load_model(out).vocab == load_model(run_dir).vocab


def test_export_never_writes_into_a_run_folder_and_overwrites_only_with_force(run_dir, tmp_path):
    runner = CliRunner()
    before = {p.name: p.read_bytes() for p in run_dir.glob("*.safetensors")}
    for target in (run_dir / "my-export.safetensors", run_dir / "last.safetensors"):
        result = runner.invoke(app, ["export", str(run_dir), "--format", "safetensors", "--out", str(target),
                                     "--force"])
        assert result.exit_code == 4 and "run folder" in result.output
    assert {p.name: p.read_bytes() for p in run_dir.glob("*.safetensors")} == before
    out = tmp_path / "model.safetensors"
    out.write_bytes(b"mine")
    args = ["export", str(run_dir), "--format", "safetensors", "--out", str(out)]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "--force" in refused.output and out.read_bytes() == b"mine"
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0
    assert load_model(out).vocab == load_model(run_dir).vocab


def test_export_never_writes_anywhere_below_a_run_folder(run_dir, tmp_path):
    (tmp_path / "link").symlink_to(run_dir)
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    targets = [("safetensors", run_dir / "data" / "m.safetensors"), ("hf", run_dir / "x" / "y"),
               ("safetensors", tmp_path / "link" / "m.safetensors"),  # a link into the run
               ("safetensors", run_dir / "data" / ".." / ".." / run_dir.name / "m.safetensors")]
    for fmt, target in targets:
        result = CliRunner().invoke(app, ["export", str(run_dir), "--format", fmt, "--out", str(target),
                                          "--force"])
        assert result.exit_code == 4, result.output
        assert f"{target} is inside the run folder {run_dir.resolve()}" in result.output
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before


def test_errors_name_the_out_path_not_the_temporary_file(run_dir, tmp_path, monkeypatch):
    from charlstm.runs import checkpoint

    def refused(*args: str) -> str:
        """The CLI's one line for an export that cannot write: it names --out, never a .tmp- file."""
        result = CliRunner().invoke(app, ["export", str(run_dir), *args, "--force"])
        assert result.exit_code != 0 and ".tmp-" not in result.output, result.output
        assert sum(line.startswith("charlstm: error:") for line in result.output.splitlines()) == 1
        assert "Traceback" not in result.output
        return result.output

    folder = tmp_path / "m.safetensors"
    folder.mkdir()
    assert f"{folder} is a folder" in refused("--format", "safetensors", "--out", str(folder))
    weights = tmp_path / "hf" / "model.safetensors"
    weights.mkdir(parents=True)  # a folder where the weights go
    assert f"{weights}: " in refused("--format", "hf", "--out", str(weights.parent))

    def read_only(*args, dir, **kwargs):  # as mkstemp fails in a folder the user may not write to
        raise PermissionError(13, "Permission denied", str(Path(dir) / ".tmp-x1y2z3.safetensors"))

    monkeypatch.setattr(checkpoint.tempfile, "mkstemp", read_only)
    out = tmp_path / "model.safetensors"
    message = refused("--format", "safetensors", "--out", str(out))
    assert f"{out}: " in message and "Permission denied" in message
