"""The interactive continuation loop of ``charlstm generate --interactive``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from charlstm.config.sample import SampleConfig
from charlstm.errors import CorpusError, UnknownCharactersError
from charlstm.generation.generators import generate
from charlstm.runs.loading import LoadedModel

HISTORY_CHARS = 4000  # the interactive session re-reads at most this much of its text per turn


def interactive(
    loaded: LoadedModel, config: SampleConfig, read: Callable[[], str | None],
    write: Callable[[str], None], note: Callable[[str], None],
) -> str:
    """A prompt loop: each line the user types is added to the text, which the model continues.

    ``read`` returns the next line (None at end of input); an empty line asks for more of the
    same text; ``/reset`` starts a new text; ``/quit`` ends. Ctrl-C during a continuation
    stops it and the next line is read; a line the model cannot read (a character outside its
    vocabulary) is left out, with a line to ``note`` saying why. Returns the whole text.
    """
    text = ""
    while (line := read()) is not None:
        if line.strip() == "/quit":
            break
        if line.strip() == "/reset":
            text = ""
            continue
        if text + line:
            text = _turn(loaded, config, text, line, write, note)
    return text


def _turn(loaded: LoadedModel, config: SampleConfig, text: str, line: str,
          write: Callable[[str], None], note: Callable[[str], None]) -> str:
    """``line`` added to ``text`` and continued, written as it comes; returns the text after the turn."""
    whole = text + line
    # Each turn gets its own seed, derived from the session's, so a rerun repeats itself.
    turn = replace(config, num_samples=1, seed=None if config.seed is None else config.seed + len(whole))
    try:
        prompt, steps = generate(loaded, whole[-HISTORY_CHARS:], turn)
    except CorpusError as exc:  # the text so far was read before: only the new line can be at fault
        note(f"{_unreadable(exc)}; that line was left out")
        return text
    text = whole[: len(whole) - min(len(whole), HISTORY_CHARS)] + prompt
    try:
        for step in steps:
            write(step[0])
            text += step[0]
    except KeyboardInterrupt:
        pass  # Ctrl-C ends this continuation, not the session: what it wrote stays in the text
    write("\n")
    return text


def _unreadable(exc: CorpusError) -> str:
    if isinstance(exc, UnknownCharactersError):  # its own message speaks of a setting, not of the line
        return f"not in the model's vocabulary: {', '.join(repr(c) for c in exc.unknown)}"
    return str(exc)
