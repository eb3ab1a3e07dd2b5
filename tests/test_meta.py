"""runs/meta.py: the typed checkpoint metadata round-trips, and every bad field is a CheckpointError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from charlstm.config import CorpusConfig, ModelConfig, TrainConfig
from charlstm.config.choices import Cell, FramingName
from charlstm.errors import CheckpointError
from charlstm.model.network import CharLSTM
from charlstm.runs import loading
from charlstm.runs.checkpoint import load_checkpoint, read_meta, save_checkpoint
from charlstm.runs.meta import CheckpointMeta, Metric, Progress

VOCAB = list("\n abcdefgh")
MODEL = ModelConfig(vocab_size=len(VOCAB), hidden_size=8, num_layers=1, embedding_size=4, dropout=0.0)


def _meta() -> CheckpointMeta:
    return CheckpointMeta(
        model_config=MODEL, train_config=TrainConfig(framing="window", seq_len=12),
        corpus_config=CorpusConfig(lowercase=True), vocab=VOCAB,
        progress=Progress(step=7, epoch=1, batch=2, epoch_loss_sum=3.5, epoch_samples=4, best=1.25),
        data_sha256="ab" * 32, last_eval={"step": 7, "val_loss": 1.5}, world_size=2,
        metric=Metric("val_loss", 1.25), imported_from={"file": "w.hdf5"},
    )


def _saved(tmp_path: Path, meta: CheckpointMeta | None = None) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "ck.safetensors", model=CharLSTM(MODEL), meta=meta or _meta())


def _rewrite(path: Path, edit) -> Path:
    """Write ``path`` again with its metadata JSON changed by ``edit(record)``."""
    tensors = load_checkpoint(path).tensors
    record = read_meta(path).to_json()
    edit(record)
    save_file(tensors, str(path), metadata={"charlstm": json.dumps(record)})
    return path


def test_every_field_round_trips_with_its_type(tmp_path):
    path = _saved(tmp_path)
    meta = read_meta(path)
    assert meta == _meta()
    assert load_checkpoint(path).meta == meta
    assert meta.train_config.framing is FramingName.WINDOW  # the choice comes back as its enum
    assert meta.model_config.cell is Cell.LSTM
    assert isinstance(meta.progress, Progress) and isinstance(meta.metric, Metric)
    assert meta.vocabulary.to_list() == VOCAB


def test_a_config_field_added_later_takes_its_default(tmp_path):
    path = _rewrite(_saved(tmp_path), lambda r: r["train_config"].pop("sample_length"))
    assert read_meta(path).train_config.sample_length == TrainConfig().sample_length


def _delete(*keys):
    def edit(record):
        target = record
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]
    return edit


def _set(value, *keys):
    def edit(record):
        target = record
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return edit


@pytest.mark.parametrize(("edit", "field"), [
    (_delete("vocab"), "vocab"),
    (_delete("model_config"), "model_config"),
    (_delete("progress"), "progress"),
    (_delete("progress", "step"), "progress.step"),
    (_delete("metric", "value"), "metric.value"),
    (_set("many", "model_config", "hidden_size"), "model_config.hidden_size"),
    (_set(True, "model_config", "num_layers"), "model_config.num_layers"),
    (_set(-5, "train_config", "seq_len"), "train_config"),
    (_set("sideways", "train_config", "framing"), "train_config.framing"),
    (_set("2", "world_size"), "world_size"),
    (_set([1, 2], "vocab"), "vocab[0]"),
    (_set(["a", "a"], "vocab"), "vocab"),
    (_set(list("abc"), "vocab"), "vocab"),  # 3 characters against a 10-symbol head
    (_set("nope", "progress"), "progress"),
    (_set(1, "last_eval"), "last_eval"),
    (_set(1, "surprise"), "surprise"),
])
def test_a_missing_or_mistyped_field_is_a_checkpoint_error_naming_file_and_field(tmp_path, edit, field):
    path = _rewrite(_saved(tmp_path), edit)
    for read in (read_meta, load_checkpoint, loading.load_model, loading.run_info):
        with pytest.raises(CheckpointError) as info:
            read(path)
        message = str(info.value)
        assert str(path) in message and f"field {field}" in message, message


def test_metadata_that_is_not_an_object(tmp_path):
    path = _saved(tmp_path)
    save_file(load_checkpoint(path).tensors, str(path), metadata={"charlstm": "[1, 2]"})
    with pytest.raises(CheckpointError, match="unreadable metadata"):
        read_meta(path)


def test_claimed_sizes_are_checked_against_the_tensors_before_anything_is_allocated(tmp_path):
    path = _rewrite(_saved(tmp_path), _set(60_000, "model_config", "hidden_size"))
    for read in (loading.load_model, loading.run_info):
        with pytest.raises(CheckpointError, match="do not fit the stored model_config"):
            read(path)
