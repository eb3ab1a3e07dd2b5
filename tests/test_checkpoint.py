"""checkpoint.py and loading.load_model: round trips, atomic writes, clear errors."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from charlstm.config import CorpusConfig, ModelConfig, TrainConfig
from charlstm.errors import CheckpointError
from charlstm.model.loss import char_loss
from charlstm.model.network import CharLSTM
from charlstm.runs import checkpoint, loading
from charlstm.runs import folder as runs
from charlstm.runs.checkpoint import load_checkpoint, read_meta, save_checkpoint
from charlstm.runs.meta import FORMAT_VERSION, CheckpointMeta, Metric, Progress

VOCAB = list("\n !abcdehilnorst")
CONFIG = ModelConfig(vocab_size=len(VOCAB), embedding_size=4, hidden_size=8, num_layers=2, dropout=0.0)


def _model(seed: int = 0, config: ModelConfig = CONFIG) -> CharLSTM:
    torch.manual_seed(seed)
    return CharLSTM(config)


def _ids(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, len(VOCAB), (3, 7), generator=torch.Generator().manual_seed(seed))


def _train_step(model: CharLSTM, optimizer: torch.optim.Optimizer, ids: torch.Tensor) -> None:
    optimizer.zero_grad()
    logits, _ = model(ids[:, :-1])
    char_loss(logits, ids[:, 1:]).backward()
    optimizer.step()


def _meta(config: ModelConfig = CONFIG, **changes) -> CheckpointMeta:
    meta = CheckpointMeta(model_config=config, train_config=TrainConfig(seq_len=6),
                          corpus_config=CorpusConfig(), vocab=VOCAB, progress=Progress(step=3))
    return replace(meta, **changes)


def _saved(tmp_path: Path, model: CharLSTM | None = None, **kwargs) -> Path:
    model = model if model is not None else _model()
    return save_checkpoint(tmp_path / "ck.safetensors", model=model, meta=_meta(), **kwargs)


# --- round trips ---------------------------------------------------------------------------------


def test_model_weights_and_metadata_round_trip(tmp_path):
    model = _model(seed=0)
    last_eval = {"note": "caf\u00e9", "nested": {"a": [1, 2.5, None]}}
    meta = _meta(metric=Metric("val_loss", 1.25), last_eval=last_eval)
    path = save_checkpoint(tmp_path / "ck.safetensors", model=model, meta=meta)
    ckpt = load_checkpoint(path)
    assert ckpt.path == path
    assert ckpt.meta == meta
    assert read_meta(path) == ckpt.meta

    other = _model(seed=1)
    assert not torch.equal(other.head.weight, model.head.weight)
    other.load_state_dict(ckpt.model_state())
    for name, tensor in model.state_dict().items():
        assert torch.equal(other.state_dict()[name], tensor), name


def test_optimizer_state_round_trip_continues_identically(tmp_path):
    model = _model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    _train_step(model, optimizer, _ids(0))
    path = save_checkpoint(tmp_path / "ck.safetensors", model=model, meta=_meta(), optimizer=optimizer)

    ckpt = load_checkpoint(path)
    restored = _model(seed=5)
    restored.load_state_dict(ckpt.model_state())
    restored_optimizer = torch.optim.Adam(restored.parameters(), lr=1e-2)
    restored_optimizer.load_state_dict(ckpt.optimizer_state())

    # Without the moments, the next step would differ: the check below can fail.
    naive = _model(seed=5)
    naive.load_state_dict(ckpt.model_state())
    _train_step(naive, torch.optim.Adam(naive.parameters(), lr=1e-2), _ids(1))

    _train_step(model, optimizer, _ids(1))
    _train_step(restored, restored_optimizer, _ids(1))
    for (name, original), resumed in zip(model.named_parameters(), restored.parameters(), strict=True):
        assert torch.equal(resumed, original), name
    assert not all(torch.equal(p, q) for p, q in zip(model.parameters(), naive.parameters(), strict=True))


def test_checkpoint_without_optimizer_or_hidden_has_none(tmp_path):
    ckpt = load_checkpoint(_saved(tmp_path))
    assert ckpt.optimizer_state() is None
    assert ckpt.hidden_state() is None
    assert ckpt.rng_state() is not None


def test_hidden_state_round_trip(tmp_path):
    model = _model()
    _, hidden = model(_ids())
    ckpt = load_checkpoint(_saved(tmp_path, model=model, hidden=hidden))
    loaded = ckpt.hidden_state()
    assert len(loaded) == len(hidden) == 2
    for saved, original in zip(loaded, hidden, strict=True):
        assert torch.equal(saved, original.detach())


def test_torch_rng_state_round_trip(tmp_path):
    model = _model()
    torch.manual_seed(123)
    torch.rand(5)  # move away from the seed's start
    state_at_save = torch.get_rng_state()
    path = _saved(tmp_path, model=model)
    expected = torch.rand(8)
    torch.manual_seed(999)
    torch.rand(3)
    torch.set_rng_state(load_checkpoint(path).rng_state())
    assert torch.equal(torch.get_rng_state(), state_at_save)
    assert torch.equal(torch.rand(8), expected)


# --- atomic writes -------------------------------------------------------------------------------


def test_save_leaves_no_temporary_files_and_replaces_existing(tmp_path):
    path = tmp_path / "run" / "last.safetensors"  # the folder is created
    save_checkpoint(path, model=_model(), meta=_meta(progress=Progress(step=1)))
    save_checkpoint(path, model=_model(), meta=_meta(progress=Progress(step=2)))
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert read_meta(path).progress.step == 2


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = _saved(tmp_path)
    before = path.read_bytes()

    def crash_mid_write(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", crash_mid_write)
    with pytest.raises(OSError, match="cannot write the checkpoint \\(disk full\\)"):
        save_checkpoint(path, model=_model(seed=3), meta=_meta())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


# --- clear errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: data[:-1], id="last-byte-missing"),
        pytest.param(lambda data: data[:5], id="header-cut"),
        pytest.param(lambda data: b"", id="empty"),
        pytest.param(lambda data: b"not a checkpoint at all\n" * 40, id="garbage"),
        pytest.param(lambda data: b"\xff" * 8 + data[8:], id="bad-header-length"),
    ],
)
def test_corrupted_file_gives_a_clear_error(tmp_path, corrupt):
    path = _saved(tmp_path)
    path.write_bytes(corrupt(path.read_bytes()))
    for load in (load_checkpoint, read_meta, loading.load_model):
        with pytest.raises(CheckpointError, match="corrupted or not a checkpoint") as info:
            load(path)
        assert str(path) in str(info.value)


def test_corrupted_metadata_json_gives_a_clear_error(tmp_path):
    path = tmp_path / "bad.safetensors"
    save_file({"x": torch.zeros(2)}, str(path), metadata={"charlstm": "{not json"})
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(path)


@pytest.mark.parametrize("payload", ["[1, 2]", "null", "3"])
def test_metadata_that_is_not_a_json_object_gives_a_clear_error(tmp_path, payload):
    path = tmp_path / "odd.safetensors"
    save_file({"x": torch.zeros(2)}, str(path), metadata={"charlstm": payload})
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


@pytest.mark.parametrize("metadata", [None, {"format": "pt"}])
def test_safetensors_without_charlstm_metadata(tmp_path, metadata):
    path = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(3, 2)}, str(path), metadata=metadata)
    with pytest.raises(CheckpointError, match="not a charlstm checkpoint") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, 0, None, "1"])
def test_wrong_format_version(tmp_path, version):
    path = _saved(tmp_path)
    tensors = load_checkpoint(path).tensors
    meta = {**read_meta(path).to_json(), "format_version": version}
    if version is None:
        del meta["format_version"]
    save_file(tensors, str(path), metadata={"charlstm": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="format") as info:
        load_checkpoint(path)
    assert f"reads format {FORMAT_VERSION}" in str(info.value)


def test_missing_path(tmp_path):
    missing = tmp_path / "nope.safetensors"
    for load in (load_checkpoint, read_meta):
        with pytest.raises(CheckpointError, match="no such checkpoint") as info:
            load(missing)
        assert str(missing) in str(info.value)
    with pytest.raises(CheckpointError, match="no such"):
        loading.load_model(missing)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path)  # a folder is not a checkpoint file


# --- loading.load_model -----------------------------------------------------------------------------


def _run_folder(tmp_path: Path) -> tuple[Path, dict[str, CharLSTM]]:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    runs.write_config(run_dir, {"model_config": asdict(CONFIG)})
    models = {name: _model(seed=seed) for seed, name in enumerate(("last", "good", "best"))}
    save_checkpoint(run_dir / runs.LAST, model=models["last"], meta=_meta())
    for name, value in (("good", 2.5), ("best", 1.5)):
        save_checkpoint(run_dir / f"{name}.safetensors", model=models[name],
                        meta=_meta(metric=Metric("val_loss", value)))
    return run_dir, models


def _same_outputs(a: CharLSTM, b: CharLSTM) -> bool:
    with torch.no_grad():
        return torch.equal(a.eval()(_ids())[0], b.eval()(_ids())[0])


def test_load_model_from_a_run_folder_takes_the_best(tmp_path):
    run_dir, models = _run_folder(tmp_path)
    loaded = loading.load_model(run_dir)
    assert loaded.path == run_dir / "best.safetensors"
    assert loaded.run_dir == run_dir
    assert not loaded.model.training
    assert loaded.vocab.to_list() == VOCAB
    assert loaded.framing.name == "stream" and loaded.seq_len == 6
    assert _same_outputs(loaded.model, models["best"])
    assert not _same_outputs(loaded.model, models["good"])


def test_load_model_last_and_a_given_file(tmp_path):
    run_dir, models = _run_folder(tmp_path)
    assert _same_outputs(loading.load_model(run_dir, which="last").model, models["last"])
    assert _same_outputs(loading.load_model(run_dir / "good.safetensors").model, models["good"])


def test_load_model_falls_back_to_last_without_best(tmp_path):
    save_checkpoint(tmp_path / runs.LAST, model=_model(), meta=_meta())
    loaded = loading.load_model(tmp_path)
    assert loaded.path == tmp_path / runs.LAST
    assert loaded.run_dir is None  # no config.json: not a run folder


def test_load_model_keeps_keras_frozen_bias(tmp_path):
    config = ModelConfig(vocab_size=len(VOCAB), input_encoding="scalar", hidden_size=8, num_layers=1,
                         init="keras")
    model = _model(config=config)
    path = save_checkpoint(tmp_path / "k.safetensors", model=model, meta=_meta(config))
    loaded = loading.load_model(path).model
    assert loaded.num_parameters() == model.num_parameters()
    assert _same_outputs(loaded, model)


def test_load_model_from_an_empty_folder(tmp_path):
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        loading.load_model(tmp_path)


def test_load_model_with_weights_that_do_not_fit_the_config(tmp_path):
    bigger = ModelConfig(**{**asdict(CONFIG), "hidden_size": 12})
    path = save_checkpoint(tmp_path / "ck.safetensors", model=_model(config=bigger), meta=_meta(CONFIG))
    with pytest.raises(CheckpointError, match="do not fit"):
        loading.load_model(path)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_checkpoints_are_written_with_the_modes_of_other_files(tmp_path):
    old = os.umask(0o022)
    try:
        path = _saved(tmp_path)
        plain = tmp_path / "plain.txt"
        plain.write_text("x", encoding="utf-8")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o644
