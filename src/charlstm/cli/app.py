"""The ``charlstm`` command: parse, call the library, turn errors into exit codes.

Exit codes: 0 done (also after Ctrl-C in training, which saves first), 1 other
error, 2 bad usage or setting, 3 unusable text, 4 bad run or checkpoint,
5 training diverged.

The commands live in ``train``, ``generate`` and ``tools`` and call the library directly:
every error a user can fix is caught here, once, and printed as one line (and its hint).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from charlstm.cli import generate, score, tools, train
from charlstm.cli.console import configure_logging
from charlstm.cli.help import Command, HelpContext
from charlstm.cli.options import parse_duration
from charlstm.errors import CharLSTMError

try:  # Typer vendors Click from 0.2x on; its Click errors derive from TyperException
    from typer import TyperException as _ClickError
except ImportError:  # older Typer runs on Click itself
    from click import ClickException as _ClickError

__all__ = ["app", "main", "parse_duration"]


class _Commands(TyperGroup):
    """The command group: what goes wrong while parsing or running a command leaves it as one line."""

    context_class = HelpContext

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None,
                     **extra: Any) -> Any:
        with _user_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: Any) -> Any:  # parses and runs the subcommand
        with _user_errors():
            return super().invoke(ctx)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Library errors, OS errors and usage errors -> ``charlstm: error: ...`` and an exit code."""
    try:
        yield
    except CharLSTMError as exc:
        _exit(str(exc), exc.exit_code, hint=exc.hint)
    except OSError as exc:
        if exc.errno == errno.EPIPE:  # output piped into `head`: Typer quiets that itself
            raise
        _exit(f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc), 1)
    except _ClickError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare `charlstm`: Click shows the help
            raise
        _exit(exc.format_message(), exc.exit_code)


def _exit(message: str, exit_code: int, *, hint: str | None = None) -> NoReturn:
    typer.echo(f"charlstm: error: {message}", err=True)
    if hint:
        typer.echo(f"charlstm: hint: {hint}", err=True)
    raise typer.Exit(exit_code)


app = typer.Typer(
    cls=_Commands, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Train character-level LSTM language models on your own text and generate from them.",
)


@app.callback()
def main_options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="More log detail.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Warnings and errors only.")] = False,
) -> None:
    configure_logging(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)


app.command(cls=Command)(train.train)
app.command(cls=Command)(train.prepare)
app.command(cls=Command)(generate.generate)
app.command("eval", cls=Command)(generate.evaluate)
app.command(cls=Command)(score.score)
app.command(cls=Command)(generate.info)
app.command("import-keras", cls=Command)(tools.import_keras)
app.command(cls=Command)(tools.export)
app.command(cls=Command)(tools.report)
app.command("presets", cls=Command)(tools.list_presets)
app.command(cls=Command)(tools.serve)


def main(args: Sequence[str] | None = None) -> None:
    """The ``charlstm`` console script."""
    app(args)
