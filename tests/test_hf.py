"""The Hugging Face layout export: four files, a card the Hub can read, a folder charlstm loads back."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from _runs import invoke, train_stream_run, train_window_run, write_text
from charlstm import load_model
from charlstm.errors import ConfigError
from charlstm.interop.export import export
from charlstm.interop.hf import FILES
from charlstm.runs.loading import run_info


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hf")
    return train_stream_run(root / "run", write_text(root / "corpus.txt"))


@pytest.fixture(scope="module")
def model_dir(run_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hf-out") / "tiny-alice"
    result = invoke("export", run_dir, "--format", "hf", "--out", out)
    assert result.exit_code == 0, result.output
    return out


def front_matter(card: str) -> list[str]:
    """The lines between the opening and closing ``---`` (no PyYAML here, so checked as text)."""
    lines = card.splitlines()
    assert lines[0] == "---"
    return lines[1 : lines.index("---", 1)]


def test_the_folder_holds_config_weights_vocab_and_card(model_dir, run_dir):
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(FILES)
    loaded = load_model(run_dir)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    assert config["library_name"] == config["model_type"] == "charlstm"
    assert config["hidden_size"] == 16 and config["vocab_size"] == len(loaded.vocab)
    assert (config["framing"], config["seq_len"]) == ("stream", 16)
    vocab = json.loads((model_dir / "vocab.json").read_text(encoding="utf-8"))
    assert list(vocab) == loaded.vocab.to_list() and list(vocab.values()) == list(range(len(vocab)))


def test_the_card_front_matter_names_library_tags_metric_and_asks_for_a_license(model_dir, run_dir):
    card = (model_dir / "README.md").read_text(encoding="utf-8")
    lines = front_matter(card)
    assert "library_name: charlstm" in lines
    tags = lines[lines.index("tags:") + 1 :]
    assert {"- charlstm", "- character-level", "- lstm", "- text-generation"} <= set(tags)
    (license_line,) = [line for line in lines if line.startswith("license:")]
    assert re.fullmatch(r"license: other  # FILL IN: .+", license_line)
    # YAML's shape: block keys and list items at even indents, no tab anywhere
    assert all(re.fullmatch(r"(  )*(- )?[a-z_-]+:( .+)?|(  )*- [a-z-]+", line) for line in lines), lines
    best = run_info(run_dir).best_val
    assert best is not None
    assert f"      value: {round(best['val_bits_per_char'], 4)}" in lines
    assert '      name: "corpus.txt (held-out split)"' in lines
    assert "huggingface-cli upload" in card and "upload_folder" in card
    assert "charlstm generate path/to/tiny-alice" in card


def test_the_folder_loads_with_the_runs_logits(model_dir, run_dir):
    from_run, from_folder = load_model(run_dir), load_model(model_dir)
    assert from_folder.path == model_dir / "model.safetensors"
    assert from_folder.run_dir is None  # its config.json does not make it a run folder
    ids = torch.randint(0, len(from_run.vocab), (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(from_folder.model(ids)[0], from_run.model(ids)[0])
    summary = run_info(model_dir)
    assert summary.checkpoint == model_dir / "model.safetensors" and summary.best_val is None


def test_generate_from_the_folder_writes_the_runs_text(model_dir, run_dir):
    args = ("--seed", 7, "--length", 60)
    from_run, from_folder = invoke("generate", run_dir, *args), invoke("generate", model_dir, *args)
    assert from_folder.exit_code == 0, from_folder.output
    assert from_folder.stdout == from_run.stdout and len(from_run.stdout) > 60


def test_eval_on_the_folder_takes_a_text(model_dir, run_dir, tmp_path):
    text = write_text(tmp_path / "other.txt", words=150, seed=1)
    from_folder = invoke("eval", model_dir, text, "--json")
    assert from_folder.exit_code == 0, from_folder.output
    assert json.loads(from_folder.stdout) == json.loads(invoke("eval", run_dir, text, "--json").stdout)
    without = invoke("eval", model_dir)  # no run folder, so no held-out split to fall back on
    assert without.exit_code == 3 and "give a text" in without.output


def test_the_folder_serves(model_dir):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from charlstm.serve.app import create_app, model_paths

    with TestClient(create_app(model_paths(model_dir, []))) as client:
        info = client.get("/v1/model").json()
        assert info["name"] == "tiny-alice" and info["checkpoint"] == "model.safetensors"
        reply = client.post("/v1/generate", json={"prompt": "the ", "length": 20, "seed": 1})
        assert reply.status_code == 200 and len(reply.json()["texts"][0]) == 20


def test_a_folder_that_is_not_empty_needs_force(run_dir, tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    refused = invoke("export", run_dir, "--format", "hf", "--out", out)
    assert refused.exit_code == 2 and "not empty" in refused.output and "--force" in refused.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    forced = invoke("export", run_dir, "--format", "hf", "--out", out, "--force")
    assert forced.exit_code == 0, forced.output
    assert sorted(p.name for p in out.iterdir()) == sorted([*FILES, "notes.txt"])  # the user's file stays
    with pytest.raises(ConfigError, match="not a folder"):
        export(load_model(run_dir), "hf", out / "notes.txt")


def test_a_run_without_a_held_out_split_gets_no_metric(tmp_path):
    run = train_window_run(tmp_path / "run", write_text(tmp_path / "t.txt", words=150), cell="gru")
    out = export(load_model(run), "hf", tmp_path / "model")
    lines = front_matter((out / "README.md").read_text(encoding="utf-8"))
    assert not any(line.startswith("model-index") for line in lines)  # a training loss is no held-out score
    assert "- gru" in lines
    assert load_model(out).framing.name == "window"


def test_a_config_or_vocab_that_contradicts_the_weights_is_warned_about(model_dir, run_dir, tmp_path, caplog):
    import shutil

    folder = tmp_path / "edited"
    shutil.copytree(model_dir, folder)
    with caplog.at_level("WARNING", logger="charlstm"):
        load_model(folder)
    assert not caplog.records  # as exported: nothing to say
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    (folder / "config.json").write_text(json.dumps({**config, "hidden_size": 999}), encoding="utf-8")
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    first, second = list(vocab)[:2]
    vocab[first], vocab[second] = vocab[second], vocab[first]
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    with caplog.at_level("WARNING", logger="charlstm"):
        loaded = load_model(folder)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    using = "using model.safetensors"
    assert warnings == [
        f"{folder / 'config.json'}: hidden_size is 999, but model.safetensors holds 16; {using}",
        f"{folder / 'vocab.json'}: character {first!r} is id 1 there, but id 0 in model.safetensors; {using}",
    ]
    assert loaded.model.config.hidden_size == 16 and loaded.vocab == load_model(run_dir).vocab
    info = invoke("info", folder)
    assert info.exit_code == 0 and "config.json: hidden_size is 999" in info.stderr
