"""What a checkpoint carries besides tensors: one typed record, built and parsed here only.

On disk it is the JSON entry of the safetensors header (``runs.checkpoint``). Parsing checks
every field against its type and turns anything odd into a ``CheckpointError`` that names the
file and the field, never a ``KeyError`` or ``TypeError`` further on. The fields of the
configs may be missing (a setting added after the file was written takes its default); every
other field must be there.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from charlstm.config import CorpusConfig, ModelConfig, TrainConfig
from charlstm.data.items import ItemsInfo
from charlstm.data.vocab import Vocab
from charlstm.errors import CharLSTMError, CheckpointError

FORMAT_VERSION = 1
_CONFIGS = (ModelConfig, TrainConfig, CorpusConfig)


@dataclass
class Progress:
    """Counters that locate a run exactly; saved in every checkpoint."""

    step: int = 0
    epoch: int = 0  # the epoch in progress, from 0
    batch: int = 0  # the next batch of that epoch
    epoch_loss_sum: float = 0.0  # sum over the epoch's samples, for its mean training loss
    epoch_samples: int = 0
    best: float | None = None


@dataclass(frozen=True)
class Metric:
    """The value a best checkpoint was kept for."""

    name: str  # val_loss or train_loss
    value: float


@dataclass(frozen=True)
class CheckpointMeta:
    """Everything but the tensors: configs, vocabulary, counters, results, provenance."""

    model_config: ModelConfig
    train_config: TrainConfig
    corpus_config: CorpusConfig
    vocab: list[str]
    progress: Progress
    data_sha256: str | None = None  # the prepared text trained on: resume refuses other data
    last_eval: dict[str, Any] = field(default_factory=dict)  # the latest metrics.jsonl record
    world_size: int = 1  # processes that trained it: resume needs as many
    metric: Metric | None = None  # set on best checkpoints
    imported_from: dict[str, Any] | None = None  # a Keras file's name and attributes
    items: ItemsInfo | None = None  # a list of things: its format and labels (items framing)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: object, path: Path) -> CheckpointMeta:
        """Parse and check the JSON of ``path``; a bad field raises ``CheckpointError``."""
        if isinstance(raw, dict) and raw.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"{path}: checkpoint format {raw.get('format_version')!r}, this "
                                  f"charlstm reads format {FORMAT_VERSION}")
        meta = _parse(cls, raw, path, "metadata")
        try:
            Vocab(meta.vocab)
        except CharLSTMError as exc:
            raise _bad(path, "vocab", str(exc)) from None
        if len(meta.vocab) != meta.model_config.vocab_size:
            raise CheckpointError(f"{path}: field vocab: {len(meta.vocab)} characters, but "
                                  f"model_config.vocab_size is {meta.model_config.vocab_size}")
        return meta

    @property
    def vocabulary(self) -> Vocab:
        return Vocab(self.vocab)


def parse_configs(raw: object, path: Path) -> tuple[ModelConfig, TrainConfig, CorpusConfig]:
    """The model, train and corpus configs of a record such as RUN/config.json, checked field by field."""
    if not isinstance(raw, dict):
        raise _bad(path, "configs", f"expected an object, got {raw!r:.60}")
    model, train, corpus = (_parse(cls, raw.get(key), path, key)
                            for cls, key in zip(_CONFIGS, ("model", "train", "corpus"), strict=True))
    return model, train, corpus


def _bad(path: Path, where: str, problem: str) -> CheckpointError:
    return CheckpointError(f"{path}: bad checkpoint metadata: field {where}: {problem}")


def _parse(hint: Any, value: Any, path: Path, where: str) -> Any:
    """``value`` checked against the type ``hint`` (recursively for dataclasses)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _parse(inner, value, path, where)
    if dataclasses.is_dataclass(hint):
        return _parse_dataclass(hint, value, path, where)
    if origin is list:
        if not isinstance(value, list):
            raise _bad(path, where, f"expected a list, got {value!r:.60}")
        return [_parse(args[0], v, path, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _bad(path, where, f"expected an object, got {value!r:.60}")
        return value
    if hint is Any:
        return value
    return _parse_scalar(hint, value, path, where)


def _parse_scalar(hint: Any, value: Any, path: Path, where: str) -> Any:
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        if value not in set(hint):
            raise _bad(path, where, f"expected one of {', '.join(hint)}, got {value!r:.60}")
        return hint(value)
    if hint not in ok:
        raise TypeError(f"no parser for {hint!r}")  # a programming error, not a user's
    if not ok[hint]:
        raise _bad(path, where, f"expected {hint.__name__}, got {value!r:.60}")
    return float(value) if hint is float else value


def _parse_dataclass(cls: type, value: Any, path: Path, where: str) -> Any:
    if not isinstance(value, dict):
        raise _bad(path, where, f"expected an object, got {value!r:.60}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - set(known) - {"optimizer"})  # the optimizer's layout: checkpoint.py
    if unknown:
        raise _bad(path, f"{where}.{unknown[0]}" if where != "metadata" else unknown[0],
                   "not a field this charlstm knows (written by a newer version?)")
    kwargs = {}
    for name, f in known.items():
        inner = name if where == "metadata" else f"{where}.{name}"
        if name in value:
            kwargs[name] = _parse(hints[name], value[name], path, inner)
        elif _required(cls, f):
            raise _bad(path, inner, "missing")
    try:
        return cls(**kwargs)
    except CharLSTMError as exc:  # a config's own check (a negative seq_len, a bad vocabulary)
        raise _bad(path, where, str(exc)) from None


def _required(cls: type, f: dataclasses.Field) -> bool:
    """Config fields may be missing (they take defaults); the record's optional ones too."""
    if cls in _CONFIGS:
        return False
    if cls is CheckpointMeta:
        return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    return True  # counters and metrics: a partial record is a damaged one
