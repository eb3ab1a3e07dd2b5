"""Items framing (makemore style): a list of things, each item read from its start to its end.

The split files hold items one after another, each as its start symbol (the start, or its
label), its characters and the end symbol (``data.items``); in every items vocabulary the
start is id 0 and the end id 1. An item of n characters is one training row::

    input:   <start> t r e x              (the start symbol, or the item's label)
    target:    t     r e x <end>          n + 1 predictions: the end counts once, as makemore's

Rows of one batch are padded to its longest item; a padded target is ``IGNORE`` and costs
nothing. Each item starts from a zero state, so what the model learns of an item's start and
end is what generation from a start symbol needs. The label's own symbol is never a target:
a label is given, not predicted. The loss per character counts the ends (makemore's "test
loss" is the same figure).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

from charlstm.config.choices import FramingName
from charlstm.data.items import END_ID
from charlstm.data.vocab import Vocab
from charlstm.errors import CorpusError
from charlstm.framing.base import Batch, Framing, progress_bar
from charlstm.framing.stream import StreamReader
from charlstm.model.loss import EvalResult, char_loss
from charlstm.model.network import CharLSTM, State, evaluating

IGNORE = -100  # the target of a padded position: cross_entropy's ignore_index
EVAL_ITEMS = 256  # items scored per forward pass


class ItemFraming(Framing):
    """Whole items, padded batches, a fresh state per item; see the module docstring."""

    name = FramingName.ITEMS
    reads_items = True

    def batches(self, ids: np.ndarray, batch_size: int, *, seed: int, shuffle: bool, rank: int = 0,
                world_size: int = 1) -> ItemBatches:
        return ItemBatches(ids, batch_size, seed=seed, rank=rank, world_size=world_size)

    def loss(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
             state: State | None) -> tuple[torch.Tensor, State | None]:
        logits, _ = model(x)  # (B, T, V), every row from a zero state
        return char_loss(logits, y), None  # padded targets are IGNORE: they cost nothing

    def evaluate(self, model: CharLSTM, ids: np.ndarray, *, device: torch.device,
                 max_chars: int | None = None, progress: bool = False) -> EvalResult:
        return evaluate_items(model, ids, device=device, max_chars=max_chars, progress=progress)

    def can_score(self, ids: np.ndarray) -> bool:
        return len(ids) > 0  # one whole item is enough

    def reader(self, model: CharLSTM, prompt: torch.Tensor, rows: int) -> StreamReader:
        return StreamReader(model, prompt, rows)  # the start symbol (and a prefix), then one step a character

    @property
    def sample_prompt_length(self) -> int:
        return 1  # an item's start symbol

    def default_prompt(self, vocab: Vocab, training_ids: Callable[[], np.ndarray | None],
                       rng: np.random.Generator) -> str:
        """A new item: the start symbol (a labelled model's items start with a label instead)."""
        return vocab.chars[0]


def item_bounds(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the items in ``ids``: item k is ``ids[starts[k] : ends[k] + 1]``."""
    ends = np.flatnonzero(np.asarray(ids) == END_ID)
    if len(ends) == 0 or ends[-1] != len(ids) - 1:
        raise CorpusError("these ids are not a list of items (they must end with an item's end)")
    starts = np.concatenate([[0], ends[:-1] + 1])
    return starts, ends


def decode_items(ids: np.ndarray, vocab: Vocab) -> list[tuple[str, str]]:
    """Each item of ``ids`` as (its start or label symbol, its text), decoded in one pass."""
    ids = np.asarray(ids)
    if len(ids) == 0:
        return []
    text = vocab.decode(ids)  # one character per id: a string index is an id index
    starts, ends = item_bounds(ids)
    return [(text[s], text[s + 1 : e]) for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]


def pad_items(ids: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Items as (inputs, targets), each (B, T): T is the longest item's length; targets padded IGNORE."""
    longest = int((ends - starts).max())
    x = np.full((len(starts), longest), END_ID, dtype=np.int64)
    y = np.full((len(starts), longest), IGNORE, dtype=np.int64)
    for row, (start, end) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        item = np.asarray(ids[start : end + 1], dtype=np.int64)
        x[row, : len(item) - 1] = item[:-1]
        y[row, : len(item) - 1] = item[1:]
    return torch.from_numpy(x), torch.from_numpy(y)


class ItemBatches:
    """The training items in a new seeded order every epoch, ``batch_size`` items a batch.

    With several processes each takes every ``world_size``-th batch's share of its own rows,
    so all take the same number of steps.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1):
        self.ids, self.batch_size, self.seed = ids, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.starts, self.ends = item_bounds(ids)
        rows = batch_size * world_size
        self.steps = len(self.starts) // rows
        if self.steps == 0:
            raise CorpusError(f"{len(self.starts)} training items are too few for batches of {rows} "
                              "items; lower --batch-size")

    def __len__(self) -> int:
        return self.steps

    def iterate(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.starts))
        rows = self.batch_size * self.world_size
        for k in range(start, self.steps):
            mine = order[k * rows : (k + 1) * rows][self.rank :: self.world_size]
            yield (k, *pad_items(self.ids, self.starts[mine], self.ends[mine]))

    def describe(self) -> str:
        return (f"Items: {len(self.starts):,} in {self.steps} batches of {self.batch_size} per epoch, "
                "a new order each epoch")


@torch.no_grad()
def evaluate_items(model: CharLSTM, ids: np.ndarray, *, device: torch.device, max_chars: int | None = None,
                   progress: bool = False) -> EvalResult:
    """Every item's characters and end, each item from its start symbol and a zero state.

    ``max_chars`` scores the first items whose predictions reach it (whole items).
    """
    starts, ends = item_bounds(ids)
    if max_chars is not None:
        keep = int(np.searchsorted(np.cumsum(ends - starts), max_chars)) + 1
        starts, ends = starts[:keep], ends[:keep]
    by_length = np.argsort(ends - starts, kind="stable")  # similar lengths together: little padding
    with evaluating(model):
        total = torch.zeros((), device=device, dtype=torch.float64)
        count = 0
        for first in progress_bar(range(0, len(starts), EVAL_ITEMS), progress, unit_scale=EVAL_ITEMS):
            chosen = by_length[first : first + EVAL_ITEMS]
            x, y = (t.to(device) for t in pad_items(ids, starts[chosen], ends[chosen]))
            logits, _ = model(x)  # (B, T, V)
            scored = int((y != IGNORE).sum())
            total += char_loss(logits, y).double() * scored
            count += scored
    return EvalResult(loss=float(total) / count, characters=count)
