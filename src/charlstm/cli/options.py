"""Flags made from the config dataclasses, so the CLI cannot drift from them.

Every field a user may set becomes a flag of the same name (``hidden_size`` <-> ``--hidden-size``):
bools get ``--x/--no-x``, StrEnum fields offer the enum's values, ``X | None`` takes an X. Every
flag defaults to None, "not given", and a command sees only the flags given, so the rest keep
the preset's (or the config's own) values.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import types
import typing
from collections.abc import Callable, Collection
from typing import Annotated, Any, TypeVar

import typer

from charlstm.errors import ConfigError

Command = TypeVar("Command", bound=Callable[..., Any])

# Filled in from the training text, never set by hand.
NOT_FLAGS = frozenset({"vocab_size"})

# Help only where the field's name alone leaves the user guessing; choices show by themselves.
FIELD_HELP: dict[str, str] = {
    "input_encoding": "scalar: the tutorial's id / vocab_size.",
    "init": "keras: glorot / orthogonal kernels, one bias with the forget gate at 1.",
    "gate_activation": "hard_sigmoid as Keras 2.0-2.2's LSTM.",
    "dropout": "Between layers and before the head.",
    "locked_dropout": "--dropout's mask shared by every time step of a row (variational).",
    "input_dropout": "Locked dropout on the first layer's inputs.",
    "embedding_dropout": "Drop whole characters from the embedding.",
    "weight_drop": "DropConnect on the recurrent weights (AWD-LSTM); keeps the fused kernel.",
    "framing": "stream: state carried across batches; window: the tutorial's next-character windows.",
    "seq_len": "BPTT length (stream) or window length (window).",
    "batch_size": "Parallel streams or windows per step.",
    "time_budget": "Wall-clock limit for this invocation, e.g. 300, 90s, 5m, 1h30m.",
    "beta2": "Adam's second-moment decay.",
    "adam_eps": "Adam epsilon (Keras 2.0: 1e-8, today: 1e-7).",
    "grad_clip": "Max gradient norm (0: off).",
    "min_lr_ratio": "The cosine schedule ends at lr * this.",
    "val_fraction": "The last part of the text held out.",
    "eval_every": "Steps between evaluations (0: at epoch ends only).",
    "eval_max_chars": "Held-out characters each evaluation scores, the split's first ones (all: every one).",
    "checkpoint_metric": "What 'best' means (train_loss: the epoch mean, as Keras's loss).",
    "checkpoint_name": "Checkpoint file name; fields: epoch, step, loss.",
    "keep_best": "How many improvements to keep on disk.",
    "shuffle": "Window framing: a new order every epoch.",
    "seed": "One seed for Python, NumPy and torch: the same seed, the same result.",
    "device": "auto, cpu, cuda or mps.",
    "precision": "bf16: autocast matmuls on GPUs that have it.",
    "compile": "torch.compile the model (CUDA).",
    "log_every": "Steps between progress updates and NaN checks.",
    "sample_every": "Log short samples every N steps (0: never).",
    "sample_length": "Characters per logged sample.",
    "init_from": "Fine-tune: start a new run from this run's (or checkpoint's) weights.",
    "strict_vocab": "Fine-tune: refuse characters the model lacks instead of adding them.",
    "tensorboard": "Also write losses, bits/char, lr, speed and samples to RUN/tensorboard/.",
    "strip_gutenberg": "Cut Project Gutenberg's header and licence.",
    "encoding": "Encoding of the text files.",
    "normalize": "BOM, newlines, NFC, blank lines; off only to read a text exactly as another tool did.",
    "length": "Characters to generate after the prompt.",
    "top_k": "Keep the k most likely characters.",
    "top_p": "Keep the smallest set whose probability reaches p.",
    "greedy": "Always the most likely character.",
    "num_samples": "Samples generated together.",
    "unknown": "Characters not in the vocabulary.",
    "replacement": "The character --unknown replace uses.",
}

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*$")


def parse_duration(text: str) -> float:
    """'90', '90s', '5m', '1h30m', '2.5m' -> seconds."""
    match = _DURATION.match(text)
    if not text.strip() or not match or not any(match.groups()):
        raise ConfigError(f"cannot read duration {text!r}; write e.g. 300, 300s, 5m or 1h30m")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ConfigError("a duration must be positive")
    return total


def parse_char_count(text: str | int) -> int:
    """'all' -> 0 (no cap); otherwise a whole number of characters, 0 or more."""
    text = str(text)  # click also passes the default through
    if text.strip().lower() == "all":
        return 0
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise ConfigError(f"cannot read {text!r} as a number of characters; write e.g. 100000 or all"
                          ) from None
    if value < 0:
        raise ConfigError("a number of characters must be >= 0 (0 or all: every one)")
    return value


# Fields read from text another way than their type: (parser, metavar).
_PARSERS: dict[str, tuple[Callable[[str], Any], str]] = {
    "time_budget": (parse_duration, "DURATION"), "eval_max_chars": (parse_char_count, "N|all")}


def settable_fields(config: type) -> list[tuple[str, Any]]:
    """``(name, type)`` of each field of ``config`` a user may set, ``X | None`` read as X."""
    hints = typing.get_type_hints(config)  # the configs' annotations are strings
    return [(f.name, _without_none(hints[f.name]))
            for f in dataclasses.fields(config) if f.name not in NOT_FLAGS]


def config_flags(*configs: type, only: Collection[str] | None = None) -> Callable[[Command], Command]:
    """Give a command one flag per settable field of ``configs`` (or of those named in ``only``).

    The command declares its own parameters and ``**settings``, which receives the flags the
    user gave, by field name, and no others.
    """
    flags = [_flag(name, value_type, panel=f"{config.__name__.removesuffix('Config')} settings")
             for config in configs for name, value_type in settable_fields(config)
             if only is None or name in only]
    names = {flag.name for flag in flags}

    def decorate(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        if clash := names & {p.name for p in own}:
            raise TypeError(f"{command.__name__} declares {', '.join(sorted(clash))}, a config field too")

        @functools.wraps(command)
        def with_settings(**values: Any) -> Any:
            given = {k: v for k, v in values.items() if k in names and v is not None}
            return command(**{k: v for k, v in values.items() if k not in names}, **given)

        # Typer reads a command's parameters from its signature: the generated flags join it here.
        with_settings.__signature__ = signature.replace(parameters=[*own, *flags])  # type: ignore[attr-defined]
        return typing.cast(Command, with_settings)

    return decorate


def _flag(name: str, value_type: Any, *, panel: str) -> inspect.Parameter:
    """One keyword-only, default-None Typer option for the field ``name``."""
    help_text, dashed = FIELD_HELP.get(name), name.replace("_", "-")
    if name in _PARSERS:
        parser, metavar = _PARSERS[name]
        option = typer.Option(parser=parser, metavar=metavar, help=help_text, rich_help_panel=panel)
    elif value_type is bool:
        option = typer.Option(f"--{dashed}/--no-{dashed}", help=help_text, rich_help_panel=panel)
    else:
        option = typer.Option(help=help_text, rich_help_panel=panel)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[value_type | None, option])


def _without_none(hint: Any) -> Any:
    """``X | None`` -> X; any other type as it is."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        kept = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(kept) == 1:
            return kept[0]
    return hint
