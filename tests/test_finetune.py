"""Fine-tuning (--init-from): a new run from another run's weights, on new text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from _runs import (
    TINY_STREAM,
    TINY_WINDOW,
    invoke,
    sample_text,
    train_stream_run,
    train_window_run,
    write_text,
)
from charlstm.data.prepared import open_prepared
from charlstm.errors import ConfigError, CorpusError
from charlstm.runs import folder as runs
from charlstm.runs.checkpoint import read_meta
from charlstm.runs.loading import load_model
from charlstm.training import session as api

CPU = torch.device("cpu")


def _new_text(path: Path, seed: int = 7) -> Path:
    """The same kind of text, with a few characters the first lacks (in its training part)."""
    path.write_text("Quiz 42! Zebra?\n" + sample_text(1500, seed), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def stream_source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("source")
    return train_stream_run(root / "run", write_text(root / "a.txt", words=2000), max_steps=40, eval_every=20)


def _old_val(run: Path):
    return open_prepared(runs.data_dir(run)).split("val")


def test_at_step_0_the_old_text_scores_as_with_the_old_model(stream_source, tmp_path):
    old = load_model(stream_source)
    trainer = api.start_run([_new_text(tmp_path / "b.txt")], tmp_path / "ft", progress_bar=False,
                            overrides={"init_from": str(stream_source), "max_steps": 2})
    added = trainer.data.vocab.chars[len(old.vocab):]
    assert added and trainer.data.vocab.chars[: len(old.vocab)] == old.vocab.chars
    val = _old_val(stream_source)
    before = old.framing.evaluate(old.model, val, device=CPU)
    after = trainer.framing.evaluate(trainer.model, val, device=CPU)
    assert after.loss == pytest.approx(before.loss, rel=1e-6, abs=1e-7)
    assert trainer.model_config == old.model.config.__class__(
        **{**old.model.config.__dict__, "vocab_size": len(trainer.data.vocab)})


def test_a_window_model_with_scalar_input_keeps_its_scores_too(tmp_path):
    source = train_window_run(tmp_path / "src", write_text(tmp_path / "a.txt", words=400))
    old = load_model(source)
    assert old.model.config.input_encoding == "scalar"  # as the tutorial and imported Keras runs
    new_text = _new_text(tmp_path / "b.txt")
    trainer = api.start_run([new_text], tmp_path / "ft", progress_bar=False,
                            overrides={"init_from": str(source), "epochs": 1})
    assert trainer.framing.name == "window" and trainer.config.seq_len == TINY_WINDOW["seq_len"]
    ids = open_prepared(runs.data_dir(source)).split("train")[:400]
    before = old.framing.evaluate(old.model, ids, device=CPU)
    after = trainer.framing.evaluate(trainer.model, ids, device=CPU)
    assert after.loss == pytest.approx(before.loss, rel=1e-5)
    with pytest.raises(ConfigError, match="seq_len stays"):
        api.start_run([new_text], tmp_path / "ft2", progress_bar=False,
                      overrides={"init_from": str(source), "seq_len": 20})


def test_fine_tuning_beats_a_fresh_model_after_the_same_steps(stream_source, tmp_path):
    text = _new_text(tmp_path / "b.txt")
    same = {**TINY_STREAM, "max_steps": 12, "eval_every": 12, "lr": 3e-3, "seed": 5}
    tuned = api.train([text], out_dir=tmp_path / "ft", init_from=str(stream_source), **same)
    fresh = api.train([text], out_dir=tmp_path / "fresh", preset="default", **same)
    assert tuned.last_eval["val_loss"] < fresh.last_eval["val_loss"]


def test_the_source_is_recorded_in_the_config_and_every_checkpoint(stream_source, tmp_path):
    result = invoke("train", _new_text(tmp_path / "b.txt"), "--out", tmp_path / "ft", "--init-from",
                    stream_source, "--max-steps", "3", "--eval-every", "3", "--no-progress")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "ft" / "config.json").read_text(encoding="utf-8"))
    source_ckpt = runs.resolve_checkpoint(stream_source)
    assert record["init_from"]["checkpoint"] == str(source_ckpt.resolve())
    assert record["init_from"]["step"] == 40 and "Q" in record["init_from"]["added_characters"]
    for ckpt in (tmp_path / "ft").glob("*.safetensors"):
        assert read_meta(ckpt).train_config.init_from == str(source_ckpt.resolve())


def test_strict_vocab_refuses_new_characters_and_leaves_no_run(stream_source, tmp_path):
    with pytest.raises(CorpusError, match="strict-vocab"):
        api.train([_new_text(tmp_path / "b.txt")], out_dir=tmp_path / "ft", init_from=str(stream_source),
                  strict_vocab=True, max_steps=2)
    assert not (tmp_path / "ft").exists()
    ok = tmp_path / "same.txt"
    ok.write_text(sample_text(800, seed=3), encoding="utf-8")  # only characters the model has
    api.train([ok], out_dir=tmp_path / "ft", init_from=str(stream_source), strict_vocab=True, max_steps=2)


def test_the_architecture_cannot_change_but_regularisation_can(stream_source, tmp_path):
    text = _new_text(tmp_path / "b.txt")
    result = invoke("train", text, "--out", tmp_path / "ft", "--init-from", stream_source,
                    "--hidden-size", "64")
    assert result.exit_code == 2 and "cannot change hidden_size" in result.output
    assert not (tmp_path / "ft").exists()
    trainer = api.start_run([text], tmp_path / "ok", progress_bar=False,
                            overrides={"init_from": str(stream_source), "dropout": 0.25, "lr": 1e-4})
    assert trainer.model_config.dropout == 0.25 and trainer.config.lr == 1e-4


def test_a_missing_source_is_a_clear_error(tmp_path):
    result = invoke("train", write_text(tmp_path / "b.txt"), "--out", tmp_path / "ft", "--init-from",
                    tmp_path / "nowhere")
    assert result.exit_code != 0 and "nowhere" in result.output
    assert not (tmp_path / "ft").exists()


# How UTF-8 curly quotes and an accent read as latin-1: mojibake (lowercased, as cleaning may).
MOJIBAKE = set("\x80\x9c\x9d\u00e2\u00c3\u00e3\u00a9")


def test_the_new_text_is_read_with_its_own_encoding_not_the_sources(tmp_path):
    source = train_stream_run(tmp_path / "src", write_text(tmp_path / "a.txt", words=400), encoding="latin-1",
                              lowercase=True, max_steps=2)
    new = tmp_path / "b.txt"
    new.write_text("\u201cCaf\u00e9\u201d, she said.\n" + sample_text(400, seed=2), encoding="utf-8")
    old = load_model(source).vocab
    trainer = api.start_run([new], tmp_path / "ft", progress_bar=False,
                            overrides={"init_from": str(source), "max_steps": 1})
    added = set(trainer.data.vocab.chars[len(old):])
    assert {"\u201c", "\u201d", "\u00e9"} <= added and not added & MOJIBAKE
    corpus = json.loads((tmp_path / "ft" / "config.json").read_text(encoding="utf-8"))["corpus"]
    assert corpus["encoding"] == "utf-8" and corpus["lowercase"]  # the rest of the cleaning carries over
    asked = api.start_run([new], tmp_path / "ft2", progress_bar=False,  # the user's setting is obeyed
                          overrides={"init_from": str(source), "max_steps": 1, "encoding": "latin-1"})
    assert MOJIBAKE & set(asked.data.vocab.chars)
