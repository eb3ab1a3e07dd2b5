"""Settings documented from the config fields' help: docs/settings.md and ``charlstm presets``.

``python -m charlstm.cli.settings_doc [PATH]`` writes docs/settings.md (or PATH): a table per
config with each setting's flag, default, range and help. The help is the field's
``metadata["help"]``, as the flags show it; tests/test_settings_doc.py checks that the file in
the checkout is what this writes, so the docs cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import sys
import textwrap
import typing
from enum import StrEnum
from pathlib import Path

from charlstm import presets
from charlstm.cli.options import NOT_FLAGS, field_help, show_value
from charlstm.config.corpus import CorpusConfig
from charlstm.config.dynamic import DYNAMIC_RANGES, DynamicConfig
from charlstm.config.model import MODEL_RANGES, ModelConfig
from charlstm.config.ranges import Range
from charlstm.config.sample import SAMPLE_RANGES, SampleConfig
from charlstm.config.train import TRAIN_RANGES, TrainConfig

# eval declares these DynamicConfig fields by hand as --dynamic-NAME (cli/generate.py).
DYNAMIC_FLAGS = ("lr", "seq_len", "decay")

# config -> (heading, where its flags are, its ranges)
SECTIONS: dict[type, tuple[str, str, dict[str, Range]]] = {
    ModelConfig: ("the model's architecture", "Flags of `charlstm train`.", MODEL_RANGES),
    TrainConfig: ("how a model is trained", "Flags of `charlstm train`; `charlstm prepare` takes "
                  "`--val-fraction` and `--test-fraction` too.", TRAIN_RANGES),
    CorpusConfig: ("how raw text becomes training text",
                   "Flags of `charlstm train` and `charlstm prepare`.", {}),
    SampleConfig: ("how the next character is chosen", "Flags of `charlstm generate`; `charlstm eval` "
                   "takes `--unknown` and `--replacement` too.", SAMPLE_RANGES),
    DynamicConfig: ("dynamic evaluation", "Flags of `charlstm eval --dynamic`, named `--dynamic-` "
                    "and the setting; the others are set from Python "
                    "(`charlstm.analysis.dynamic.dynamic_evaluate`).", DYNAMIC_RANGES),
}


def settings_markdown() -> str:
    """docs/settings.md: every config's settings, as a table each."""
    parts = ["# Settings", "",
             "<!-- Written by `python -m charlstm.cli.settings_doc` from the help on the config "
             "fields (src/charlstm/config/): edit the fields, then run it again. -->", "",
             "Every setting of charlstm, a table per config. A flag has its setting's name "
             "(`hidden_size` <-> `--hidden-size`, a switch also `--no-...`), and Python "
             "(`charlstm.train(...)`, the configs) takes the name itself. A range is checked when "
             "the config is made: a bracket includes its end, a parenthesis leaves it out.", "",
             "The model, training and corpus defaults are the `default` preset's. `charlstm train` "
             "without `--preset` starts from `auto`, which sizes the model to the text and the time "
             "budget; a preset's value stands wherever no flag is given, and `charlstm presets` lists "
             "what each preset pins."]
    for config, (heading, note, ranges) in SECTIONS.items():
        parts += ["", f"## {config.__name__}: {heading}", "", note, "",
                  "| setting | flag | default | range or choices | what it does |", "|---|---|---|---|---|"]
        hints = typing.get_type_hints(config)
        for f in dataclasses.fields(config):
            allowed = ", ".join(_choices(hints[f.name])) or (str(ranges[f.name]) if f.name in ranges else "")
            cells = [f"`{f.name}`", _flag_of(config, f.name, hints[f.name]),
                     "unset" if f.default is None else f"`{show_value(f.default)}`", allowed,
                     field_help(config, f.name)]
            parts.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(parts) + "\n"


def _flag_of(config: type, name: str, hint: object) -> str:
    """The flag that sets ``config``'s field ``name``, as the CLI makes it."""
    if name in NOT_FLAGS:
        return "(from the text)"
    if config is DynamicConfig:
        if name not in DYNAMIC_FLAGS:
            return "(none)"
        name = f"dynamic_{name}"
    dashed = name.replace("_", "-")
    return f"`--{dashed}` / `--no-{dashed}`" if hint is bool else f"`--{dashed}`"


def _choices(hint: object) -> list[str]:
    """The values a StrEnum-typed setting takes (``X | None`` too); none for any other."""
    for candidate in (hint, *typing.get_args(hint)):
        if isinstance(candidate, type) and issubclass(candidate, StrEnum):
            return [member.value for member in candidate]
    return []


def presets_text(width: int = 80) -> str:
    """What ``charlstm presets`` prints: each preset's description, then every setting it pins."""
    lines: list[str] = []
    for name, preset in presets.PRESETS.items():
        lines += textwrap.wrap(f"{name}: {preset.description}", width, subsequent_indent="  ",
                               break_on_hyphens=False)
        for part in ("model", "train", "corpus"):
            config = getattr(preset, part)
            items = [f"{f.name} = {show_value(getattr(config, f.name))}"
                     for f in dataclasses.fields(config) if f.name not in NOT_FLAGS]
            lines += _pack(items, f"  {part + ':':<8}", width)
    return "\n".join(lines)


def _pack(items: list[str], label: str, width: int) -> list[str]:
    """``items`` joined by commas into lines of at most ``width``, the first after ``label``;
    an item is never split."""
    lines, current = [], ""
    for item in items:
        if current and len(label) + len(current) + len(item) + 3 > width:  # ", " and a trailing ","
            lines.append(current + ",")
            current = item
        else:
            current = f"{current}, {item}" if current else item
    lines.append(current)
    return [(label if i == 0 else " " * len(label)) + line for i, line in enumerate(lines)]


def main(argv: list[str] | None = None) -> None:
    """Write docs/settings.md (or the path given)."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0] if args else "docs/settings.md")
    path.write_text(settings_markdown(), encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
