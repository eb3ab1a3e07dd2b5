"""Where the CLI's log lines go: stderr, at the level -v / -q chose."""

from __future__ import annotations

import logging
import sys
from typing import TextIO


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time, not the stream of when it was made.

    Test runners and embedding programs swap ``sys.stderr``; a handler holding the old one
    would write into a closed stream.
    """

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # always sys.stderr


def configure_logging(level: int) -> None:
    """Plain log lines on stderr from ``level`` up; library code only logs, the CLI decides this."""
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    console_level(level)


def console_level(level: int) -> None:
    """Set the level of the root logger's handlers."""
    # On the handlers, not only the logger: a run's log file takes INFO even when the console is quiet.
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)
