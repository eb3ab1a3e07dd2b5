"""What a framing is: the one object that knows how text becomes examples and how a model reads.

A framing owns, for its kind of model:

- ``batches``: the training split as batches, one ``iterate(epoch, start)`` for every framing;
- ``loss``: the forward pass on a batch and the loss on this framing's targets, with the
  recurrent state it carries to the next batch (or None);
- ``evaluate``: scoring held-out ids as this framing's model reads them;
- ``reader``: reading a prompt and continuing from it, one character at a time, for the
  generators (which only sample from ``reader.logits`` and call ``reader.advance``);
- ``default_prompt`` and ``sample_prompt_length``: what generation starts from when the user
  gives no prompt, and how much text the training log's samples start from.

Adding a framing is one module with a subclass, plus its name in ``FramingName`` and the
registry in ``charlstm.framing``. Nothing outside these modules compares framing names.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from typing import ClassVar, Protocol

import numpy as np
import torch

from charlstm.config.choices import FramingName
from charlstm.data.vocab import Vocab
from charlstm.errors import CorpusError
from charlstm.model.loss import EvalResult
from charlstm.model.network import CharLSTM, State

Batch = tuple[int, torch.Tensor, torch.Tensor]  # (index in the epoch, inputs, targets)


class Batches(Protocol):
    """The training split cut into batches of one framing."""

    def __len__(self) -> int: ...

    def iterate(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """Batches ``start``, ``start + 1``, ... of ``epoch``."""
        ...

    def describe(self) -> str:
        """One log line: how the split was cut."""
        ...


class Reader(Protocol):
    """A prompt being continued: the next character's logits, and a way to feed it in."""

    logits: torch.Tensor  # (B, V): scores for the next character of every row

    def advance(self, ids: torch.Tensor) -> None:
        """Append ``ids`` (B,) to every row; ``logits`` then scores the character after them."""
        ...


class Framing(ABC):
    """One way of framing text for a character model; see the module docstring."""

    name: ClassVar[FramingName]
    # Whether generation from no prompt shows the prompt it drew (the tutorial prints "Seed:").
    announces_default_prompt: ClassVar[bool] = False
    # Whether a generation step is one tiny step of the network, which runs faster on one thread.
    single_steps: ClassVar[bool] = True
    # Whether the model reads text as one continuing stream (state carried), as dynamic evaluation needs.
    carries_state: ClassVar[bool] = False
    # Whether it reads a list of items (``data.items``), which only a list of items can train.
    reads_items: ClassVar[bool] = False

    def __init__(self, seq_len: int):
        self.seq_len = seq_len  # T: BPTT length or window length

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seq_len={self.seq_len})"

    @abstractmethod
    def batches(self, ids: np.ndarray, batch_size: int, *, seed: int, shuffle: bool, rank: int = 0,
                world_size: int = 1) -> Batches:
        """The training ids as batches of ``batch_size`` for process ``rank`` of ``world_size``."""

    @abstractmethod
    def loss(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
             state: State | None) -> tuple[torch.Tensor, State | None]:
        """Forward one batch; return the mean loss (nats/char) and the state to carry on."""

    @abstractmethod
    def evaluate(self, model: CharLSTM, ids: np.ndarray, *, device: torch.device,
                 max_chars: int | None = None, progress: bool = False) -> EvalResult:
        """Score ``ids`` as this framing's model reads text; ``max_chars`` caps the predictions.

        ``progress`` shows a bar (on a terminal) for long interactive scoring.
        """

    def can_score(self, ids: np.ndarray) -> bool:
        """Whether ``ids`` (a held-out split) is long enough for ``evaluate``: more than one window."""
        return len(ids) > self.seq_len

    @abstractmethod
    def reader(self, model: CharLSTM, prompt: torch.Tensor, rows: int) -> Reader:
        """Read a (P,) prompt into ``rows`` identical rows, ready to continue."""

    @property
    @abstractmethod
    def sample_prompt_length(self) -> int:
        """Characters of held-out text the training log's samples start from."""

    def default_prompt(self, vocab: Vocab, training_ids: Callable[[], np.ndarray | None],
                       rng: np.random.Generator) -> str:
        """What to continue when no prompt is given: a random window of the training text."""
        return random_window(vocab, training_ids(), self.seq_len, rng)


def random_window(vocab: Vocab, ids: np.ndarray | None, length: int, rng: np.random.Generator) -> str:
    """A random ``length``-character stretch of ``ids``, as the tutorial seeds generation."""
    if ids is None or len(ids) == 0:
        raise CorpusError(
            "no prompt given and no training text beside the checkpoint to draw a seed window from; "
            "give a prompt", hint="--prompt")
    start = int(rng.integers(0, max(1, len(ids) - length)))
    return vocab.decode(np.asarray(ids[start : start + length]))


def progress_bar(steps: range, show: bool, *, unit_scale: int) -> Iterable[int]:
    """``steps``, under a characters-scored bar when ``show`` and stderr is a terminal."""
    if not show:
        return steps
    from tqdm import tqdm  # only for long interactive scoring

    return tqdm(steps, desc="scoring", unit="char", unit_scale=unit_scale, leave=False, disable=None)
