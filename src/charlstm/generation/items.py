"""Whole items from a model trained on a list of things: N new names, titles, ... one per row.

Each row starts from an item's start symbol (or the symbol of its label) and the optional
prefix, and steps until it draws the end symbol; a row that reaches ``max_item_chars``
first is cut and flagged, never run into the next item. The steps are the generators'
(``continue_ids``: one sampling step for the CLI, the library and the service). Items are
scored afterwards under the model (temperature 1): their log-probability, ends counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from charlstm.config.sample import SampleConfig
from charlstm.data.cleaning import clean_prompt
from charlstm.data.items import END_ID, START_ID, ItemsInfo
from charlstm.data.records import LABEL_BASE
from charlstm.errors import ConfigError, CorpusError
from charlstm.framing.items import decode_items, item_bounds, pad_items
from charlstm.generation.beam import beam_search
from charlstm.generation.generators import continue_ids
from charlstm.generation.sampling import RepeatPenalty, draw_seed, sample_generators, sample_seed
from charlstm.model.network import evaluating
from charlstm.runs.loading import LoadedModel

MAX_ITEM_CHARS = 1000  # the default cut for an item that never ends
NEW_ONLY_DRAWS = 50  # new_only draws at most this many times the items asked for
ROWS = 256  # items drawn together at most
SCORE_ITEMS = 256  # items scored per forward pass: bounds the (B, T, V) logits


@dataclass(frozen=True)
class Item:
    text: str  # prefix included
    label: str | None
    novel: bool | None  # not in the training list (exact match); None when that list is not at hand
    logprob: float  # natural log-probability under the model of the text and its end, given its start
    complete: bool  # False: cut at max_item_chars before it ended

    @property
    def chars(self) -> int:
        return len(self.text)


@dataclass(frozen=True)
class ItemDraw:
    items: list[Item]
    drawn: int  # items drawn in all (new_only draws until it has enough, or its bound)
    new: int | None  # how many of the drawn were not in the training list

    @property
    def new_share(self) -> float | None:
        return None if self.new is None or not self.drawn else self.new / self.drawn


def items_info(loaded: LoadedModel) -> ItemsInfo:
    """The model's list: its labels and format; a clear error for a model of running text."""
    if loaded.meta.items is None:
        raise ConfigError("this model was trained on running text, not a list of items; items, label and "
                          "new_only need a model trained with records set", hint="--records lines")
    return loaded.meta.items


def training_items(loaded: LoadedModel) -> set[str] | None:
    """The training list's items (cleaned), when the run's data is at hand."""
    ids = loaded.training_ids()
    return None if ids is None else {text for _, text in decode_items(ids, loaded.vocab)}


def generate_items(
    loaded: LoadedModel, n: int, config: SampleConfig, *, prompt: str = "", labels: Sequence[str] = (),
    new_only: bool = False, max_item_chars: int = MAX_ITEM_CHARS, known: set[str] | None = None,
) -> ItemDraw:
    """``n`` whole items; ``labels`` (each must be the model's) are taken in turn, else drawn as often
    as they occur in training. ``known``: the training list (default: read from the run).

    Items come grouped by label (each label's rows are drawn together): read ``Item.label``, not
    the order the labels were asked in.
    """
    info = items_info(loaded)
    if n < 1 or max_item_chars < 1:
        raise ConfigError("items and max_item_chars must be at least 1")
    if labels and not info.labels:
        raise ConfigError("this model was trained without labels; leave label out")
    for label in labels:
        info.symbol(label)  # an unknown label: a clear error listing the model's
    known = training_items(loaded) if known is None else known
    if config.beam is not None:
        return _beam_items(loaded, info, n, config, prompt, labels, new_only, max_item_chars, known)
    if new_only and known is None:
        raise CorpusError("new_only needs the training list: the checkpoint is not in its run folder")
    prefix = clean_prompt(prompt, loaded.meta.corpus_config) if prompt else ""
    seed = config.seed if config.seed is not None else draw_seed()
    rng = np.random.default_rng(seed)
    found: list[Item] = []
    drawn = new = 0
    while len(found) < n and drawn < (NEW_ONLY_DRAWS * n if new_only else n):
        want = min(ROWS, n - len(found) if not new_only else max(16, n - len(found)))
        batch = _draw(loaded, info, want, config, prefix, labels_for(info, labels, drawn, want, rng),
                      max_item_chars, sample_seed(seed, drawn), known)
        drawn += len(batch)
        new += sum(bool(item.novel) for item in batch)
        found += [item for item in batch if item.novel or not new_only]
    return ItemDraw(found[:n], drawn, None if known is None else new)


def labels_for(info: ItemsInfo, labels: Sequence[str], drawn: int, count: int,
               rng: np.random.Generator) -> list[str | None]:
    """The labels of the next ``count`` items: ``labels`` in turn (from item ``drawn`` on), else drawn
    as often as each occurs in training; None for a model without labels."""
    if labels:
        return [labels[(drawn + k) % len(labels)] for k in range(count)]
    if not info.labels:
        return [None] * count
    weights = np.asarray(info.label_counts, dtype=np.float64) + 1e-12
    picks = rng.choice(len(info.labels), size=count, p=weights / weights.sum())
    return [info.labels[k] for k in picks.tolist()]


def _draw(loaded: LoadedModel, info: ItemsInfo, count: int, config: SampleConfig, prefix: str,
          labels: list[str | None], max_item_chars: int, seed: int, known: set[str] | None) -> list[Item]:
    """``count`` items, one group of rows per label (rows of a group share a start)."""
    items: list[Item] = []
    for group, label in enumerate(dict.fromkeys(labels)):
        rows = labels.count(label)
        start = info.symbol(label) + prefix
        ids = torch.from_numpy(loaded.vocab.encode(start, config.unknown, config.replacement))
        settings = replace(config, length=max_item_chars - len(prefix), num_samples=rows, seed=None)
        generators = sample_generators(sample_seed(seed, group), rows, loaded.model.head.weight.device)
        steps = continue_ids(loaded.model, loaded.framing, ids, settings, generators)
        tails = _until_end(steps, rows, hidden=_symbol_ids(loaded))
        for tail, complete in tails:
            text = prefix + loaded.vocab.decode(tail)
            novel = None if known is None else text not in known
            items.append(Item(text, label, novel, math.nan, complete))
    scores = score_items(loaded, [(item.label, item.text) for item in items])
    return [replace(item, logprob=score) for item, score in zip(items, scores, strict=True)]


def _beam_items(loaded: LoadedModel, info: ItemsInfo, n: int, config: SampleConfig, prompt: str,
                labels: Sequence[str], new_only: bool, max_item_chars: int,
                known: set[str] | None) -> ItemDraw:
    """The ``n`` most likely items (of one label, after the prefix), by a beam of ``config.beam``."""
    width = config.beam or 1
    if new_only:
        raise ConfigError("new_only draws until it has new items; beam search finds the most likely ones, "
                          "list or not: leave one out")
    if len(set(labels)) > 1 or (info.labels and not labels):
        raise ConfigError("beam search finds the most likely items of one label: give exactly one",
                          hint=f"--label {info.labels[0] if info.labels else ''}".rstrip())
    if n > width:
        raise ConfigError(f"a beam of {width} keeps {width} items: {n} asks for more", hint=f"--beam {n}")
    label = labels[0] if labels else None
    prefix = clean_prompt(prompt, loaded.meta.corpus_config) if prompt else ""
    start = loaded.vocab.encode(info.symbol(label) + prefix, config.unknown, config.replacement)
    found = beam_search(loaded.model, torch.from_numpy(start), width, max_item_chars - len(prefix),
                        finished=lambda ids: ids[-1] == END_ID, repeat=RepeatPenalty.of(config), best=n,
                        ended_first=True)
    hidden = _symbol_ids(loaded) | {END_ID}
    texts = [prefix + loaded.vocab.decode([i for i in h.ids if i not in hidden]) for h in found]
    scores = score_items(loaded, [(label, text) for text in texts])
    items = [Item(text, label, None if known is None else text not in known, score, h.ended)
             for text, h, score in zip(texts, found, scores, strict=True)]
    return ItemDraw(items, len(items), None if known is None else sum(bool(i.novel) for i in items))


def _symbol_ids(loaded: LoadedModel) -> set[int]:
    """Ids of the start and label symbols: never part of an item's text."""
    return {START_ID} | {i for i, c in enumerate(loaded.vocab.chars) if ord(c) >= LABEL_BASE}


def _until_end(steps, rows: int, hidden: set[int]) -> list[tuple[list[int], bool]]:
    """Each row's ids up to its end symbol (excluded) and whether it got there.

    A start or label symbol drawn inside an item (a model never trained on them as targets
    gives them little but not no weight) is left out of its text, as the service leaves it out.
    """
    tails: list[list[int]] = [[] for _ in range(rows)]
    ended = [False] * rows
    for step in steps:
        for row, next_id in enumerate(step.tolist()):
            if ended[row]:
                continue
            if next_id == END_ID:
                ended[row] = True
            elif next_id not in hidden:
                tails[row].append(next_id)
        if all(ended):
            break  # closing the generator puts the model and threads back as they were
    return list(zip(tails, ended, strict=True))


@torch.no_grad()
def score_items(loaded: LoadedModel, items: Sequence[tuple[str | None, str]]) -> list[float]:
    """The log-probability (nats) of each (label, text): its characters and its end, given its start.

    ``SCORE_ITEMS`` items a forward pass, so a long list costs time, not (B, T, V) memory.
    """
    info, vocab, model = items_info(loaded), loaded.vocab, loaded.model
    device, scores = model.head.weight.device, []
    with evaluating(model):
        for first in range(0, len(items), SCORE_ITEMS):
            serial = [info.symbol(label) + text for label, text in items[first : first + SCORE_ITEMS]]
            ids = np.concatenate([np.append(vocab.encode(s), END_ID) for s in serial])
            x, y = (t.to(device) for t in pad_items(ids, *item_bounds(ids)))
            logp = model(x)[0].float().log_softmax(-1)  # (B, T, V)
            picked = logp.gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1) * (y >= 0)
            scores += picked.sum(-1).tolist()
    return scores
