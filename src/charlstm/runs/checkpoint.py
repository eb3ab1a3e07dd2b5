"""The only module that writes or reads checkpoint files.

A checkpoint is one ``.safetensors`` file, self-contained and safe to load (no
pickle): tensors for the weights, the optimizer's moments, the RNG state and
the carried LSTM state, plus one JSON metadata entry holding the typed
``CheckpointMeta`` (``runs.meta``) and the optimizer's non-tensor state.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from charlstm.errors import CheckpointError
from charlstm.runs.files import plain_mode
from charlstm.runs.meta import CheckpointMeta

SUFFIX = ".safetensors"
_META_KEY = "charlstm"
_OPTIMIZER_KEY = "optimizer"  # param groups and scalars, beside the typed record


@dataclass
class Checkpoint:
    """A loaded checkpoint: tensors by prefixed name, the metadata, the optimizer's layout."""

    path: Path
    tensors: dict[str, torch.Tensor]
    meta: CheckpointMeta
    optimizer_layout: dict[str, Any] | None = None

    def _group(self, prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) :]: v for k, v in self.tensors.items() if k.startswith(prefix)}

    def model_state(self) -> dict[str, torch.Tensor]:
        return self._group("model/")

    def hidden_state(self) -> tuple[torch.Tensor, ...] | None:
        parts = self._group("hidden/")
        return tuple(parts[str(i)] for i in range(len(parts))) if parts else None

    def rng_state(self, rank: int = 0) -> torch.Tensor | None:
        return self.tensors.get("rng/torch" if rank == 0 else f"rng/torch/{rank}")

    def optimizer_state(self) -> dict | None:
        """Rebuild ``optimizer.state_dict()`` from the flattened tensors and JSON."""
        saved = self.optimizer_layout
        if saved is None:
            return None
        try:
            state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in saved["scalars"].items()}
            for name, tensor in self._group("optimizer/").items():
                param_id, key = name.split("/", 1)
                state.setdefault(int(param_id), {})[key] = tensor
            return {"state": state, "param_groups": saved["param_groups"]}
        except (KeyError, TypeError, ValueError, AttributeError):
            raise CheckpointError(f"{self.path}: bad checkpoint metadata: field optimizer") from None


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, entries in sd["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{param_id}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(param_id), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def save_checkpoint(
    path: Path,
    *,
    model: torch.nn.Module,
    meta: CheckpointMeta,
    optimizer: torch.optim.Optimizer | None = None,
    hidden: tuple[torch.Tensor, ...] | None = None,
    rng_states: list[torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint atomically: a temporary file in the same folder, then rename.

    A crash mid-write leaves the previous file intact, never a half-written one.
    """
    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    record = meta.to_json()
    if optimizer is not None:
        opt_tensors, record[_OPTIMIZER_KEY] = _flatten_optimizer(optimizer)
        tensors.update(opt_tensors)
    if hidden is not None:
        tensors.update({f"hidden/{i}": h.detach().cpu().contiguous() for i, h in enumerate(hidden)})
    # One RNG state per training process (rank order); a lone process saves its own.
    for rank, state in enumerate(rng_states or [torch.get_rng_state()]):
        tensors["rng/torch" if rank == 0 else f"rng/torch/{rank}"] = state
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=SUFFIX, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise _write_error(path, exc) from None
    try:
        save_file(tensors, tmp, metadata={_META_KEY: json.dumps(record)})
        os.chmod(tmp, plain_mode())  # as other files of the run, not mkstemp's 0600
        os.replace(tmp, path)
    except (OSError, SafetensorError) as exc:  # a full disk, a quota: the previous file is intact
        raise _write_error(path, exc) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _write_error(path: Path, exc: Exception) -> OSError:
    """A failed write as an OSError about ``path`` (not the temporary file): the disk's, not the run's."""
    if isinstance(exc, OSError):
        return OSError(exc.errno, f"cannot write the checkpoint ({exc.strerror or exc}); the previous one, "
                       "if any, is kept", str(path))
    return OSError(f"{path}: cannot write the checkpoint ({exc}); the previous one, if any, is kept")


def _read_header(path: Path, with_shapes: bool = False) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """The metadata JSON and (when asked) the model's tensor shapes, without reading any tensor."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    shapes: dict[str, tuple[int, ...]] = {}
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata()
            if with_shapes:  # only the model's: the optimizer's and RNG tensors are not needed
                shapes = {k.removeprefix("model/"): tuple(f.get_slice(k).get_shape())
                          for k in f.keys() if k.startswith("model/")}  # noqa: SIM118 (not iterable)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupted or not a checkpoint ({exc})") from None
    if not raw or _META_KEY not in raw:
        raise CheckpointError(f"{path}: a safetensors file, but not a charlstm checkpoint")
    try:
        record = json.loads(raw[_META_KEY])
    except json.JSONDecodeError:
        record = None
    if not isinstance(record, dict):
        raise CheckpointError(f"{path}: corrupted or not a checkpoint (unreadable metadata)")
    return record, shapes


def read_meta(path: Path) -> CheckpointMeta:
    """The metadata alone, without reading the tensors."""
    record, _ = _read_header(path)
    return _typed(record, path)


def read_header(path: Path) -> tuple[CheckpointMeta, dict[str, tuple[int, ...]]]:
    """The metadata and the model's tensor shapes by parameter name, in one read of the header."""
    record, shapes = _read_header(path, with_shapes=True)
    return _typed(record, path), shapes


def _typed(record: dict[str, Any], path: Path) -> CheckpointMeta:
    """The header's record as ``CheckpointMeta``, without the optimizer's layout beside it."""
    return CheckpointMeta.from_json({k: v for k, v in record.items() if k != _OPTIMIZER_KEY}, path)


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint``; clear errors for anything else."""
    record, _ = _read_header(path)
    meta = _typed(record, path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupted or not a checkpoint ({exc})") from None
    return Checkpoint(path, tensors, meta, record.get(_OPTIMIZER_KEY))
