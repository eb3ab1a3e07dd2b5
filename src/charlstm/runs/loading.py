"""Loading a run's model for use: a checkpoint rebuilt into a model, with its vocabulary and framing."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from charlstm.data.prepared import open_prepared
from charlstm.data.vocab import Vocab
from charlstm.errors import CheckpointError
from charlstm.framing import Framing, framing_for
from charlstm.model.network import CharLSTM, describe_shapes
from charlstm.runs.checkpoint import Checkpoint, load_checkpoint, read_header
from charlstm.runs.folder import best_checkpoints, data_dir, resolve_checkpoint, run_dir_of
from charlstm.runs.meta import CheckpointMeta
from charlstm.runs.metrics import best_record, read_metrics

log = logging.getLogger(__name__)

# A model folder in the Hugging Face Hub layout (interop.hf writes it): named here, where it is read.
HF_CONFIG = "config.json"
HF_WEIGHTS = "model.safetensors"  # a self-contained charlstm checkpoint, like any other
HF_VOCAB = "vocab.json"  # {character: id}, for other tools: the checkpoint holds the vocabulary
HF_LIBRARY = "charlstm"  # config.json's library_name: what tells it from a run folder's config.json


def hf_weights(path: Path) -> Path | None:
    """The checkpoint of a charlstm model folder in the Hub layout, or None for anything else."""
    weights, config = path / HF_WEIGHTS, path / HF_CONFIG
    if not (path.is_dir() and weights.is_file() and config.is_file()):
        return None
    try:
        raw = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # not ours to judge: resolve_checkpoint then says what the folder lacks
    return weights if isinstance(raw, dict) and raw.get("library_name") == HF_LIBRARY else None


def check_hf_files(weights: Path, meta: CheckpointMeta) -> None:
    """Warn where a model folder's config.json or vocab.json contradicts its model.safetensors.

    The checkpoint is self-contained and is what loads; the other two only describe it to people
    and other tools, so one edited by hand or copied from another model is named, not followed.
    """
    folder, framing = weights.parent, framing_for(meta.train_config)
    said = {**asdict(meta.model_config), "framing": framing.name, "seq_len": framing.seq_len}
    try:
        config = json.loads((folder / HF_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = None
    if not isinstance(config, dict):  # hf_weights found an object a moment ago: only a race gets here
        config = {}
    for name, value in said.items():
        if name in config and config[name] != value:
            log.warning("%s: %s is %s, but %s holds %s; using %s", folder / HF_CONFIG, name,
                        json.dumps(config[name]), HF_WEIGHTS, json.dumps(value), HF_WEIGHTS)
    vocab_path = folder / HF_VOCAB
    if not vocab_path.is_file():
        return  # other tools lose their map, but nothing contradicts the checkpoint
    ids = {char: i for i, char in enumerate(meta.vocab)}
    try:
        listed = json.loads(vocab_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        listed = None
    if listed != ids:
        log.warning("%s: %s; using %s", vocab_path, _vocab_difference(listed, ids), HF_WEIGHTS)


def _vocab_difference(listed: object, ids: dict[str, int]) -> str:
    """The first entry where vocab.json (``listed``) and the checkpoint's ``ids`` disagree."""
    if not isinstance(listed, dict):
        return "not a readable {character: id} object"
    for char, i in ids.items():
        if listed.get(char) != i:
            there = "missing" if char not in listed else f"id {json.dumps(listed[char])}"
            return f"character {char!r} is {there} there, but id {i} in {HF_WEIGHTS}"
    extra = next(char for char in listed if char not in ids)
    return f"character {extra!r} is not in {HF_WEIGHTS}'s vocabulary"


def resolve_model_path(path: Path, which: str = "best") -> Path:
    """The checkpoint a path names: a file, a Hub-layout model folder, or a run folder's best or last."""
    return hf_weights(path) or resolve_checkpoint(path, which)


def _run_dir(checkpoint: Path) -> Path | None:
    """The run folder a checkpoint sits in; a model folder's config.json does not make it one."""
    return None if hf_weights(checkpoint.parent) == checkpoint else run_dir_of(checkpoint)


@dataclass
class LoadedModel:
    """A model ready to use, with everything its checkpoint carried."""

    model: CharLSTM
    meta: CheckpointMeta
    path: Path

    @cached_property
    def vocab(self) -> Vocab:
        return self.meta.vocabulary

    @cached_property
    def framing(self) -> Framing:
        return framing_for(self.meta.train_config)

    @property
    def seq_len(self) -> int:
        return self.framing.seq_len

    @property
    def run_dir(self) -> Path | None:
        return _run_dir(self.path)

    def training_ids(self) -> np.ndarray | None:
        """The run's training split (a memmap), when the checkpoint sits in its run folder."""
        run_dir = self.run_dir
        folder = None if run_dir is None else data_dir(run_dir)  # data_dir reads config.json
        if folder is None or not (folder / "train.bin").exists():
            return None
        return open_prepared(folder).split("train")


def check_shapes(meta: CheckpointMeta, shapes: dict[str, tuple[int, ...]], path: Path) -> int:
    """Refuse weights that do not fit the config before any is allocated; the parameter count."""
    parameters, expected = describe_shapes(meta.model_config)
    if shapes != expected:
        wrong = sorted(set(shapes) ^ set(expected)) or sorted(k for k in shapes if shapes[k] != expected[k])
        name = wrong[0]
        raise CheckpointError(
            f"{path}: weights do not fit the stored model_config: {name} is "
            f"{shapes.get(name, 'missing')}, the config wants {expected.get(name, 'no such tensor')}")
    return parameters


def build_model(ckpt: Checkpoint, device: torch.device | str = "cpu", *,
                allow_nonfinite: bool = False) -> CharLSTM:
    """Rebuild the model a checkpoint describes and load its weights.

    Weights with a NaN or an infinity predict nothing (sampling from them gives one character
    over and over), so they are refused unless ``allow_nonfinite``.
    """
    check_shapes(ckpt.meta, {k: tuple(v.shape) for k, v in ckpt.model_state().items()}, ckpt.path)
    if not allow_nonfinite:
        broken = [k for k, v in ckpt.model_state().items()
                  if v.is_floating_point() and not bool(v.isfinite().all())]
        if broken:
            raise CheckpointError(f"{ckpt.path}: weights hold NaN or infinite values "
                                  f"({', '.join(broken[:3])}); use an earlier checkpoint of the run")
    model = CharLSTM(ckpt.meta.model_config)
    model.load_state_dict(ckpt.model_state())
    return model.to(device)


def load_model(path: Path, device: torch.device | str = "cpu", which: str = "best", *,
               allow_nonfinite: bool = False) -> LoadedModel:
    """Load a run folder's best (or a given) checkpoint, or a Hub-layout model folder, for inference."""
    ckpt = load_checkpoint(resolve_model_path(Path(path), which))
    if hf_weights(ckpt.path.parent) == ckpt.path:
        check_hf_files(ckpt.path, ckpt.meta)
    model = build_model(ckpt, device, allow_nonfinite=allow_nonfinite)
    model.eval()
    return LoadedModel(model, ckpt.meta, ckpt.path)


@dataclass(frozen=True)
class RunSummary:
    """What a run is and how well it did, read from headers and metrics without any weights."""

    checkpoint: Path
    meta: CheckpointMeta
    parameters: int
    best_checkpoints: list[tuple[str, float]] | None  # (file name, metric), best first
    best_val: dict[str, Any] | None  # the best metrics.jsonl record by val_loss: step and figures

    def as_dict(self) -> dict[str, Any]:
        """For ``charlstm info --json``."""
        meta = self.meta.to_json()
        facts: dict[str, Any] = {
            "checkpoint": str(self.checkpoint), "vocab_size": len(self.meta.vocab),
            "parameters": self.parameters, "framing": str(self.meta.train_config.framing),
            **{k: meta[k] for k in ("progress", "metric", "last_eval", "model_config", "train_config",
                                    "corpus_config")},
        }
        if self.best_checkpoints is not None:
            facts["best_checkpoints"] = [{"path": n, "value": v} for n, v in self.best_checkpoints]
        if self.best_val is not None:
            facts["best_val"] = self.best_val
        return facts


def run_info(path: Path) -> RunSummary:
    """Summarise a run folder (its best checkpoint), a model folder or a checkpoint file; reads no weights."""
    checkpoint = resolve_model_path(Path(path))
    meta, shapes = read_header(checkpoint)
    if hf_weights(Path(path)) == checkpoint:  # the folder named, not its file (serve names the file)
        check_hf_files(checkpoint, meta)
    parameters = check_shapes(meta, shapes, checkpoint)
    run_dir = _run_dir(checkpoint)
    if run_dir is None:
        return RunSummary(checkpoint, meta, parameters, None, None)
    best = [(p.name, v) for v, p in best_checkpoints(run_dir)]
    record = best_record(read_metrics(run_dir), "val_loss")
    best_val = None if record is None else {k: record[k] for k in ("step", "val_loss", "val_bits_per_char")}
    return RunSummary(checkpoint, meta, parameters, best, best_val)
