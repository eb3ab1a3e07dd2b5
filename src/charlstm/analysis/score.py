"""Scoring text piece by piece: per file, per line or per item; each position's alternatives; labels.

A model of running text (stream framing) reads a file as one stream from a zero state, each
character after the first predicted from all before it: the file's total is
``evaluate_stream(..., rows=1)``'s loss times its characters. Per line, the lines are read in
that same stream (state carried across lines): a line scores its characters and the newline
that ends it, so a file's lines add up to the file (its first character is in no line).

A model of a list (items framing) scores an item as it trained: its characters and its end,
given its start symbol or its label's (``generation.items.score_items``); the mean per character
counts the end, as ``framing.items.evaluate_items`` does. An item without a label, to a model
trained with labels, scores its marginal likelihood, log sum_l p(item | l) p(l). Classifying
is Bayes' rule, p(l | item) = p(item | l) p(l) / p(item), p(l) from the training label counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from pathlib import Path

import numpy as np
import torch

from charlstm.data.cleaning import clean_prompt
from charlstm.data.items import END_ID, ItemsInfo
from charlstm.data.records import Record, iter_records
from charlstm.data.sources import list_sources, load_text
from charlstm.data.vocab import Vocab
from charlstm.errors import ConfigError, CorpusError, UnknownCharactersError
from charlstm.framing.items import item_bounds, pad_items
from charlstm.framing.stream import EVAL_CHUNK
from charlstm.generation.items import SCORE_ITEMS, items_info, score_items
from charlstm.model.loss import NATS_TO_BITS
from charlstm.model.network import CharLSTM, evaluating
from charlstm.runs.loading import LoadedModel

MAX_TOP = 10  # alternatives per position at most


class ScorePer(StrEnum):  # what one score covers
    ITEM = "item"  # an item of a list model's file
    LINE = "line"  # a line of running text, read in the file's stream
    FILE = "file"  # a whole file, one stream


@dataclass(frozen=True)
class Positions:  # each prediction of a scored piece, in order (n positions)
    targets: np.ndarray  # (n,) the ids that came
    logprobs: np.ndarray  # (n,) their log-probabilities, nats
    ranks: np.ndarray  # (n,) each one's rank among all V characters, 1 = the most likely
    top_ids: np.ndarray  # (n, K) the K most likely ids, most likely first (K = 0: none asked)
    top_logprobs: np.ndarray  # (n, K)

    def __getitem__(self, cut: slice) -> Positions:
        return Positions(*(getattr(self, f.name)[cut] for f in fields(self)))

    @classmethod
    def concat(cls, parts: Sequence[Positions]) -> Positions:
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))


@dataclass(frozen=True)
class Score:
    where: str  # the file, "file:line N", or an item's "file:line N" / "file:row N"
    text: str | None  # the line or item scored; None for a whole file
    label: str | None  # the item's label as the file gives it
    chars: int  # predictions scored (an item's end is one)
    logprob: float  # their total log-probability, nats
    positions: Positions | None = None  # always for text; for items when alternatives are asked

    @property
    def mean_logprob(self) -> float:
        return self.logprob / self.chars if self.chars else float("nan")

    @property
    def bits_per_char(self) -> float:
        return -self.mean_logprob * NATS_TO_BITS


@dataclass(frozen=True)
class Classification:
    where: str
    text: str
    label: str | None  # the true label, when the file gives one
    predicted: str  # the most likely label
    posterior: float  # p(predicted | item)
    posteriors: dict[str, float]  # every label's, in the model's order


@dataclass(frozen=True)
class Confusion:
    labels: list[str]  # rows (true) and columns (predicted): the model's labels, then others given
    counts: np.ndarray  # (L, L) items of true label i classified as j

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.counts) / self.counts.sum())


def score_files(loaded: LoadedModel, paths: Sequence[str | Path], *, per: str | None = None, top: int = 0,
                unknown: str = "error", replacement: str | None = None, labels: bool = True) -> list[Score]:
    """Each file's, line's or item's score; ``per`` unset: items for a list model, else files.

    Text files are read and cleaned as ``charlstm eval`` reads one (the run's corpus settings),
    each file its own stream; a list model's files are read as its training list was
    (``labels`` off: without the label column, items to score by their marginal likelihood).
    """
    per = check_per(loaded, per, top)
    if per == ScorePer.ITEM:
        return score_records(loaded, read_items(loaded, paths, labels=labels), top=top, unknown=unknown,
                             replacement=replacement)
    return [score for path in list_sources(paths)
            for score in score_text(loaded, load_text([path], loaded.meta.corpus_config), per=per, top=top,
                                    unknown=unknown, replacement=replacement, where=str(path))]


def check_per(loaded: LoadedModel, per: str | None, top: int = 0) -> ScorePer:
    """``per`` checked against the model (None: its default) and ``top`` against its range."""
    is_list = loaded.meta.items is not None
    try:
        chosen = ScorePer(per) if per is not None else ScorePer.ITEM if is_list else ScorePer.FILE
    except ValueError:
        raise ConfigError(f"per must be item, line or file, not {per!r}") from None
    if is_list != (chosen == ScorePer.ITEM):
        what = "a list of items: it scores per item" if is_list else "running text: per line or file"
        raise ConfigError(f"this model was trained on {what}, not per {chosen}")
    if not is_list and not loaded.framing.carries_state:
        raise ConfigError("scoring reads running text as one stream: it needs a stream-framed model, and "
                          f"this one is {loaded.framing.name}-framed")
    if not 0 <= top <= MAX_TOP:
        raise ConfigError(f"top must be 1 to {MAX_TOP} alternatives (0: none), not {top}")
    return chosen


def score_text(loaded: LoadedModel, text: str, *, per: str = ScorePer.FILE, top: int = 0,
               unknown: str = "error", replacement: str | None = None, where: str = "text") -> list[Score]:
    """One stream model's score of ``text`` (cleaned as a prompt is), whole or per line."""
    per = check_per(loaded, per, top)
    ids = encode(loaded.vocab, clean_prompt(text, loaded.meta.corpus_config), unknown, replacement, where)
    if len(ids) < 2:
        raise CorpusError(f"{where}: scoring needs at least 2 characters (the first is predicted by none)")
    positions = stream_positions(loaded.model, ids, top)
    if per == ScorePer.FILE:
        return [_score(where, None, None, positions)]
    scores, start = [], 0
    for number, line in enumerate(loaded.vocab.decode(ids).split("\n"), start=1):
        end = start + len(line) + 1  # past its newline
        # Position p predicts character p + 1: the line's are those of characters [start, end).
        cut = positions[max(start - 1, 0) : end - 1]
        if len(cut.targets):
            scores.append(_score(f"{where}:line {number}", line, None, cut))
        start = end
    return scores


def read_items(loaded: LoadedModel, paths: Sequence[str | Path], *, labels: bool = True) -> Iterator[Record]:
    """The items of ``paths`` as the run read its list, streamed; ``labels`` off: no label column."""
    corpus = loaded.meta.corpus_config
    return iter_records(paths, corpus if labels else replace(corpus, label_column=None))


def score_records(loaded: LoadedModel, records: Iterable[Record], *, top: int = 0, unknown: str = "error",
                  replacement: str | None = None) -> list[Score]:
    """Each item's log-probability: its characters and end given its label (or start symbol)."""
    check_per(loaded, ScorePer.ITEM, top)
    info = loaded.meta.items
    records = [_clean(loaded.vocab, r, unknown, replacement) for r in records]
    # An item without a label, to a model trained with labels: its likelihood under every label.
    marginal = [k for k, r in enumerate(records) if r.label is None and info.labels]
    direct = sorted(set(range(len(records))) - set(marginal))
    totals, given = np.zeros(len(records)), [r.label for r in records]
    totals[direct] = score_items(loaded, [(given[k], records[k].text) for k in direct])
    if marginal:
        joint = _joint(loaded, info, [records[k].text for k in marginal])  # (N, L)
        totals[marginal] = np.logaddexp.reduce(joint, axis=1)
        for k, best in zip(marginal, joint.argmax(axis=1).tolist(), strict=True):
            given[k] = info.labels[best]  # alternatives are read after the most likely label
    positions = (item_positions(loaded, list(zip(given, (r.text for r in records), strict=True)), top)
                 if top else [None] * len(records))
    return [Score(r.where, r.text, r.label, len(r.text) + 1, float(total), p)
            for r, total, p in zip(records, totals.tolist(), positions, strict=True)]


def classify_records(loaded: LoadedModel, records: Iterable[Record], *, unknown: str = "error",
                     replacement: str | None = None) -> list[Classification]:
    """Each item's most likely label and every label's posterior (priors: the training counts)."""
    info = loaded.meta.items
    if info is None or not info.labels:
        kind = "running text" if info is None else "a list without labels"
        raise ConfigError(f"classifying needs a model trained on a list with labels (records and "
                          f"label_column set); this one was trained on {kind}")
    records = [_clean(loaded.vocab, r, unknown, replacement) for r in records]
    joint = _joint(loaded, info, [r.text for r in records])  # (N, L) log p(item, label)
    posteriors = np.exp(joint - np.logaddexp.reduce(joint, axis=1, keepdims=True))
    best = posteriors.argmax(axis=1).tolist()
    return [Classification(r.where, r.text, r.label, info.labels[b], row[b],
                           dict(zip(info.labels, row, strict=True)))
            for r, b, row in zip(records, best, posteriors.tolist(), strict=True)]


def confusion(classified: Sequence[Classification], labels: Sequence[str]) -> Confusion | None:
    """Counts of (true, predicted) over the items that have a true label; None when none has."""
    known = [c for c in classified if c.label is not None]
    if not known:
        return None
    names = list(dict.fromkeys([*labels, *(c.label for c in known)]))
    at = {name: i for i, name in enumerate(names)}
    counts = np.zeros((len(names), len(names)), dtype=np.int64)
    for c in known:
        counts[at[c.label], at[c.predicted]] += 1
    return Confusion(names, counts)


def encode(vocab: Vocab, text: str, unknown: str, replacement: str | None, where: str) -> np.ndarray:
    try:  # vocab.encode, its unknown-characters error naming where the text came from
        return vocab.encode(text, unknown, replacement)
    except UnknownCharactersError as exc:
        exc.args = (f"{where}: {exc}",)
        raise


@torch.no_grad()
def stream_positions(model: CharLSTM, ids: np.ndarray, top: int = 0) -> Positions:
    """Every prediction of ``ids`` read as one stream from a zero state, ``EVAL_CHUNK`` at a time."""
    device, parts, state = model.head.weight.device, [], None
    with evaluating(model):
        for start in range(0, len(ids) - 1, EVAL_CHUNK):
            stop = min(start + EVAL_CHUNK, len(ids) - 1)
            logits, state = model(torch.from_numpy(ids[None, start:stop]).to(device), state)  # (1, T, V)
            parts.append(_positions(logits[0], torch.from_numpy(ids[start + 1 : stop + 1]).to(device), top))
    return Positions.concat(parts)


@torch.no_grad()
def item_positions(loaded: LoadedModel, pairs: Sequence[tuple[str | None, str]], top: int = 0,
                   ) -> list[Positions]:
    """Each (label, text) item's predictions: its characters, then its end."""
    info, vocab, model = items_info(loaded), loaded.vocab, loaded.model
    device, found = model.head.weight.device, []
    with evaluating(model):
        for first in range(0, len(pairs), SCORE_ITEMS):
            chunk = pairs[first : first + SCORE_ITEMS]
            ids = np.concatenate([np.append(vocab.encode(info.symbol(label) + text), END_ID)
                                  for label, text in chunk])
            x, y = pad_items(ids, *item_bounds(ids))
            logits, _ = model(x.to(device))  # (B, T, V); padded positions follow each item's end
            found += [_positions(logits[row, : len(text) + 1], y[row, : len(text) + 1].to(device), top)
                      for row, (_, text) in enumerate(chunk)]
    return found


def _positions(logits: torch.Tensor, targets: torch.Tensor, top: int) -> Positions:
    """Logits (T, V) and the ids that came (T,) as Positions."""
    logp = logits.float().log_softmax(-1)  # (T, V)
    picked = logp.gather(-1, targets[:, None])  # (T, 1)
    ranks = (logp > picked).sum(-1) + 1  # ties share the better rank
    top_logp, top_ids = logp.topk(top, dim=-1)  # (T, K), most likely first
    return Positions(targets.cpu().numpy(), picked[:, 0].double().cpu().numpy(), ranks.cpu().numpy(),
                     top_ids.cpu().numpy(), top_logp.double().cpu().numpy())


def _score(where: str, text: str | None, label: str | None, positions: Positions) -> Score:
    return Score(where, text, label, len(positions.targets), float(positions.logprobs.sum()), positions)


def _clean(vocab: Vocab, record: Record, unknown: str, replacement: str | None) -> Record:
    """The record with its unknown characters refused, dropped or replaced."""
    text = vocab.decode(encode(vocab, record.text, unknown, replacement, record.where))
    return record if text == record.text else replace(record, text=text)


def _joint(loaded: LoadedModel, info: ItemsInfo, texts: Sequence[str]) -> np.ndarray:
    """log p(item, label) = log p(item | label) + log p(label): (N, L) for N texts, L labels."""
    pairs = [(label, text) for text in texts for label in info.labels]
    loglik = np.asarray(score_items(loaded, pairs), dtype=np.float64).reshape(len(texts), len(info.labels))
    counts = np.asarray(info.label_counts, dtype=np.float64)
    if len(counts) != len(info.labels) or counts.sum() <= 0:  # no counts recorded: a uniform prior
        counts = np.ones(len(info.labels))
    with np.errstate(divide="ignore"):  # a label with no training item: prior 0, never chosen
        return loglik + np.log(counts / counts.sum())
