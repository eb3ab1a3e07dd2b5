"""Help laid out for an 80-column terminal: Click's plain layout, sections by settings panel.

Help in Click's plain layout (the app's ``rich_markup_mode=None``), not Rich's panels: Rich's
tables share 80 columns among four columns and cut what does not fit ("--embedding-drop…",
"<embedding|one-h"), while Click's list never cuts a flag: a long one takes a line of its own,
its help the lines under it. Click stops at 80 columns on wider terminals too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from typer.core import TyperCommand

_Context = TyperCommand.context_class
_NO_BREAK = "\u2011"  # a non-breaking hyphen: textwrap breaks lines at "-", not at this


class Formatter(_Context.formatter_class):
    """Click's help layout, with lines broken at spaces only: a flag or a preset named in a help
    text (--init-from, tutorial-large) stays whole. Click's wrapper breaks at hyphens and takes no
    setting for it, so hyphens go in as non-breaking ones and come out as they were."""

    def write_text(self, text: str) -> None:
        super().write_text(text.replace("-", _NO_BREAK))

    def write_dl(self, rows: Sequence[tuple[str, str]], col_max: int = 30, col_spacing: int = 2) -> None:
        super().write_dl([(term, text.replace("-", _NO_BREAK)) for term, text in rows], col_max, col_spacing)

    def write(self, string: str) -> None:
        super().write(string.replace(_NO_BREAK, "-"))


class HelpContext(_Context):
    formatter_class = Formatter


class Command(TyperCommand):
    """A command whose help lists its arguments by name (RUN, TEXT...) and its options by panel.

    The panels (Model settings, Dynamic evaluation, ...) are the options' ``rich_help_panel``.
    """

    context_class = HelpContext

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:  # RUN, as Click names an argument, in the usage, help and errors
            if param.param_type_name == "argument" and param.metavar is None:
                param.metavar = (param.name or "").upper()

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = param.metavar if param.required else f"[{param.metavar}]"
                pieces.append(name + ("..." if param.nargs != 1 else ""))
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":  # its name alone: Typer adds a Python type
                name = f"{param.metavar}{'...' if param.nargs != 1 else ''}"
                sections.setdefault("Arguments", []).append((name, record[1]))
            else:
                sections.setdefault(getattr(param, "rich_help_panel", None) or "Options", []).append(record)
        for title, rows in sections.items():
            with formatter.section(title):
                formatter.write_dl(rows)
