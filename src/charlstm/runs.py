"""Run folders: where a training run keeps its config, metrics, data and checkpoints.

    RUN/config.json        resolved model, train and corpus configs, sources
    RUN/metrics.jsonl      one JSON line per evaluation
    RUN/data/              the prepared splits (train.bin, val.bin, meta.json)
    RUN/last.safetensors   the latest state, for resume
    RUN/<best>.safetensors the best k by the run's metric
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from charlstm.checkpoint import SUFFIX, Checkpoint, load_checkpoint, read_meta
from charlstm.corpus import Vocab
from charlstm.errors import CheckpointError
from charlstm.model import CharLSTM, ModelConfig

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
DATA_DIR = "data"
LAST = "last" + SUFFIX


def best_checkpoints(run_dir: Path) -> list[tuple[float, Path]]:
    """(metric, path) of the run's best checkpoints, lowest metric first."""
    found = []
    for path in run_dir.glob("*" + SUFFIX):
        if path.name == LAST or path.name.startswith(".tmp-"):
            continue
        meta = read_meta(path)
        value = meta.get("metric", {}).get("value")
        if value is not None:
            found.append((float(value), path))
    return sorted(found)


def resolve_checkpoint(path: Path, which: str = "best") -> Path:
    """A checkpoint file, or a run folder's best (``which="best"``) or last checkpoint."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such run folder or checkpoint file")
    if which == "best":
        best = best_checkpoints(path)
        if best:
            return best[0][1]
    last = path / LAST
    if last.is_file():
        return last
    raise CheckpointError(f"{path}: holds no checkpoint ({LAST} or a best checkpoint)")


def data_dir(run_dir: Path) -> Path:
    """The run's prepared data: RUN/data, or the prepared folder the run was started on."""
    config_path = run_dir / CONFIG_FILE
    recorded = DATA_DIR
    if config_path.is_file():
        recorded = json.loads(config_path.read_text(encoding="utf-8")).get("data_dir", DATA_DIR)
    return run_dir / recorded  # an absolute recorded path replaces run_dir


def run_dir_of(checkpoint_path: Path) -> Path | None:
    """The run folder a checkpoint sits in, when it sits in one."""
    parent = checkpoint_path.parent
    return parent if (parent / CONFIG_FILE).is_file() else None


@dataclass
class LoadedModel:
    """A model ready to use, with everything its checkpoint carried."""

    model: CharLSTM
    vocab: Vocab
    meta: dict[str, Any]
    path: Path

    @property
    def framing(self) -> str:
        return self.meta["train_config"]["framing"]

    @property
    def seq_len(self) -> int:
        return self.meta["train_config"]["seq_len"]

    @property
    def run_dir(self) -> Path | None:
        return run_dir_of(self.path)


def build_model(ckpt: Checkpoint, device: torch.device | str = "cpu") -> CharLSTM:
    """Rebuild the model a checkpoint describes and load its weights."""
    model = CharLSTM(ModelConfig(**ckpt.meta["model_config"]))
    try:
        model.load_state_dict(ckpt.model_state())
    except RuntimeError as exc:
        raise CheckpointError(f"{ckpt.path}: weights do not fit the stored config ({exc})") from None
    return model.to(device)


def load_model(path: Path, device: torch.device | str = "cpu", which: str = "best") -> LoadedModel:
    """Load a run folder's best (or a given) checkpoint for inference."""
    ckpt = load_checkpoint(resolve_checkpoint(Path(path), which))
    model = build_model(ckpt, device)
    model.eval()
    return LoadedModel(model, Vocab(ckpt.meta["vocab"]), ckpt.meta, ckpt.path)


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    (run_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    with open(run_dir / METRICS_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / METRICS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def run_info(path: Path) -> dict[str, Any]:
    """What a run is and how well it did, for ``charlstm info``."""
    path = Path(path)
    checkpoint = resolve_checkpoint(path)
    loaded = load_model(checkpoint)
    meta = loaded.meta
    run_dir = loaded.run_dir
    facts: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "vocab_size": len(loaded.vocab),
        "parameters": loaded.model.num_parameters(),
        "framing": loaded.framing,
        "progress": meta.get("progress", {}),
        "metric": meta.get("metric"),
        "last_eval": meta.get("last_eval", {}),
        "model_config": meta["model_config"],
        "train_config": meta["train_config"],
        "corpus_config": meta["corpus_config"],
    }
    if run_dir is not None:
        facts["best_checkpoints"] = [
            {"path": p.name, "value": v} for v, p in best_checkpoints(run_dir)
        ]
        evals = [m for m in read_metrics(run_dir) if "val_loss" in m]
        if evals:
            best = min(evals, key=lambda m: m["val_loss"])
            facts["best_val"] = {k: best[k] for k in ("step", "val_loss", "val_bits_per_char")}
    return facts
