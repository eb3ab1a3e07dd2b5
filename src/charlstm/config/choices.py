"""Every choice a setting offers, in one place: StrEnums the configs, the CLI and the service share.

A config field typed with one of these accepts the member or its plain string (``"lstm"``);
``coerce_choices`` turns the string into the member, or raises ``ConfigError`` listing the
choices. Members are strings, so JSON and comparisons with plain strings keep working.
"""

from __future__ import annotations

import dataclasses
import typing
from enum import StrEnum

from charlstm.errors import ConfigError


class Cell(StrEnum):
    LSTM = "lstm"
    GRU = "gru"
    RNN = "rnn"


class InputEncoding(StrEnum):
    EMBEDDING = "embedding"
    ONE_HOT = "one-hot"
    SCALAR = "scalar"  # the tutorial's id / vocab_size


class Init(StrEnum):
    PYTORCH = "pytorch"
    KERAS = "keras"  # glorot / orthogonal / forget-bias 1, one bias vector


class GateActivation(StrEnum):
    SIGMOID = "sigmoid"
    HARD_SIGMOID = "hard_sigmoid"  # Keras 2.0-2.2's LSTM gates (slower, unfused)


class FramingName(StrEnum):
    STREAM = "stream"  # loss on every position, state carried across batches
    WINDOW = "window"  # the tutorial: windows of seq_len predict the next character
    ITEMS = "items"  # a list of things: each item from its start (or label) to its end, state fresh


class RecordFormat(StrEnum):
    """How a file holds a list of items (``records``); unset: the file is one running text."""

    LINES = "lines"  # each non-empty line one item
    PARAGRAPHS = "paragraphs"  # items separated by blank lines
    CSV = "csv"
    TSV = "tsv"
    JSONL = "jsonl"  # one JSON object per line


class Optimizer(StrEnum):
    ADAM = "adam"
    ADAMW = "adamw"


class LRSchedule(StrEnum):
    COSINE = "cosine"  # warmup, then cosine decay over the run's budget
    CONSTANT = "constant"


class CheckpointMetric(StrEnum):
    VAL_LOSS = "val_loss"
    TRAIN_LOSS = "train_loss"  # the epoch mean, as Keras's `loss`


class Precision(StrEnum):
    FP32 = "fp32"
    BF16 = "bf16"  # autocast matmuls to bfloat16; weights stay fp32


class UnknownPolicy(StrEnum):
    ERROR = "error"  # refuse, listing the characters
    DROP = "drop"
    REPLACE = "replace"  # map them to the ``replacement`` character


def coerce_choices(instance: object) -> None:
    """Turn the plain strings of a frozen dataclass's StrEnum fields into members."""
    hints = typing.get_type_hints(type(instance))
    for f in dataclasses.fields(instance):  # type: ignore[arg-type]
        choice = _choice_type(hints[f.name])
        value = getattr(instance, f.name)
        if choice is None or value is None or isinstance(value, choice):
            continue
        try:
            member = choice(value)
        except ValueError:
            raise ConfigError(
                f"{f.name} must be one of {', '.join(choice)}, not {value!r}"
            ) from None
        object.__setattr__(instance, f.name, member)


def _choice_type(hint: object) -> type[StrEnum] | None:
    """The StrEnum in ``hint`` (``Cell`` or ``Cell | None``), if any."""
    for candidate in (hint, *typing.get_args(hint)):
        if isinstance(candidate, type) and issubclass(candidate, StrEnum):
            return candidate
    return None
