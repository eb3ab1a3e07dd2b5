"""The interactive continuation loop of ``charlstm generate --interactive``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from charlstm.config.sample import SampleConfig
from charlstm.generation.generators import generate
from charlstm.runs.loading import LoadedModel

HISTORY_CHARS = 4000  # the interactive session re-reads at most this much of its text per turn


def interactive(
    loaded: LoadedModel, config: SampleConfig, read: Callable[[], str | None],
    write: Callable[[str], None],
) -> str:
    """A prompt loop: each line the user types is added to the text, which the model continues.

    ``read`` returns the next line (None at end of input); an empty line asks for more of the
    same text; ``/reset`` starts a new text; ``/quit`` ends. Returns the whole text.
    """
    text = ""
    seed = config.seed
    while (line := read()) is not None:
        if line.strip() == "/quit":
            break
        if line.strip() == "/reset":
            text = ""
            continue
        text += line
        if not text:
            continue
        # Each turn gets its own seed, derived from the session's, so a rerun repeats itself.
        turn = replace(config, num_samples=1, seed=None if seed is None else seed + len(text))
        prompt, steps = generate(loaded, text[-HISTORY_CHARS:], turn)
        text = text[: len(text) - min(len(text), HISTORY_CHARS)] + prompt
        for step in steps:
            write(step[0])
            text += step[0]
        write("\n")
    return text
