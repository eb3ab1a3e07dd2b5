"""Flags made from the config dataclasses, so the CLI cannot drift from them.

Every field a user may set becomes a flag of the same name (``hidden_size`` <-> ``--hidden-size``):
bools get ``--x/--no-x``, StrEnum fields offer the enum's values, ``X | None`` takes an X. Every
flag defaults to None, "not given", and a command sees only the flags given, so the rest keep
the preset's (or the config's own) values. A flag's help is its field's ``metadata["help"]``,
the one place a setting is documented (docs/settings.md is written from it too).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import types
import typing
from collections.abc import Callable, Collection
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import typer

from charlstm.errors import ConfigError

Command = TypeVar("Command", bound=Callable[..., Any])

# Filled in from the training text, never set by hand.
NOT_FLAGS = frozenset({"vocab_size"})

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


def field_help(config: type, name: str) -> str:
    """The help text of ``config``'s field ``name``: what its flag, the presets and the docs show."""
    (found,) = [f for f in dataclasses.fields(config) if f.name == name]
    return typing.cast(str, found.metadata["help"])


def show_value(value: Any) -> str:
    """A setting's value as the help, ``charlstm presets`` and docs/settings.md write it."""
    if value is None:
        return "unset"
    return value.value if isinstance(value, StrEnum) else str(value)


def config_flags(*configs: type, only: Collection[str] | None = None,
                 preset_defaults: bool = False) -> Callable[[Command], Command]:
    """Give a command one flag per settable field of ``configs`` (or of those named in ``only``).

    The command declares its own parameters and ``**settings``, which receives the flags the
    user gave, by field name, and no others. Each flag's help shows the field's default, unless
    ``preset_defaults`` says a preset decides the values of the flags not given.
    """
    flags = [_flag(config, name, value_type, show_default=not preset_defaults)
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


def _flag_help(config: type, name: str, *, show_default: bool) -> str:
    """The help of ``config``'s field as its flag shows it: the field's help, and its default if asked.

    The flag's own default is None ("not given"), so the field's default is written into the help,
    as Click writes a default (a bool's as the flag that gives it, as ``[default: no-lowercase]``).
    """
    text = field_help(config, name)
    default = next(f.default for f in dataclasses.fields(config) if f.name == name)
    if not show_default or default is None:
        return text
    if isinstance(default, bool):
        shown = name.replace("_", "-") if default else f"no-{name.replace('_', '-')}"
    else:
        shown = show_value(default)
    return f"{text}  [default: {shown}]"


def _flag(config: type, name: str, value_type: Any, *, show_default: bool) -> inspect.Parameter:
    """One keyword-only, default-None Typer option for ``config``'s field ``name``."""
    dashed = name.replace("_", "-")
    common = {"help": _flag_help(config, name, show_default=show_default),
              "rich_help_panel": f"{config.__name__.removesuffix('Config')} settings"}
    if name in _PARSERS:
        parser, metavar = _PARSERS[name]
        option = typer.Option(parser=parser, metavar=metavar, **common)
    elif value_type is bool:
        option = typer.Option(f"--{dashed}/--no-{dashed}", **common)
    else:
        option = typer.Option(**common)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[value_type | None, option])


def _without_none(hint: Any) -> Any:
    """``X | None`` -> X; any other type as it is."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        kept = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(kept) == 1:
            return kept[0]
    return hint
