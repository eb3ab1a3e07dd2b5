"""Preparing a list of items (``records``) into token files: two streaming passes, split by item.

The layout, the symbols and the split rule are ``data.items``'s; the reading of the files
``data.records``'s. The first pass counts (characters, split sizes, labels, duplicates), the
second encodes each item into the file of its split; memory holds a digest per distinct item,
never the list.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from charlstm.config.corpus import CorpusConfig
from charlstm.data.items import ItemsInfo, split_draws, split_of
from charlstm.data.prepared import META_FILE, SPLITS, PreparedData
from charlstm.data.records import END, LABEL_BASE, START, Record, iter_records
from charlstm.data.vocab import Vocab
from charlstm.data.writer import check_out_dir, id_dtype, prepared_meta
from charlstm.errors import CorpusError

log = logging.getLogger(__name__)

MAX_LABELS = 4096  # labels are symbols of the vocabulary: a few thousand at most


@dataclass
class _Census:
    """What the first pass counts."""

    chars: set[str] = field(default_factory=set)
    sizes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    items: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    labels: Counter = field(default_factory=Counter)  # training items per label (every label: a key)
    seen: set[bytes] = field(default_factory=set)  # digests of the distinct items
    total: int = 0

    def add(self, record: Record, split: str) -> None:
        self.chars.update(record.text)
        self.sizes[split] += len(record.text) + 2  # start (or label) and end
        self.items[split] += 1
        self.total += 1
        if record.label is not None:
            self.labels[record.label] += split == "train"
        self.seen.add(hashlib.blake2b(record.text.encode("utf-8"), digest_size=12).digest())


def prepare_items(
    sources: Sequence[str | Path], out_dir: str | Path, *, corpus: CorpusConfig, val_fraction: float,
    test_fraction: float, seed: int, progress_bar: bool = True, base_vocab: Vocab | None = None,
    base_items: ItemsInfo | None = None, force: bool = False,
) -> PreparedData:
    """Read a list of items (``corpus.records``), split it by item and write its token files.

    With ``base_vocab`` and ``base_items`` (fine-tuning a records run) the source's symbols and
    labels keep their ids; new characters and labels follow.
    """
    out_dir = Path(out_dir)
    check_out_dir(out_dir, force)
    out_dir.mkdir(parents=True, exist_ok=True)
    census = _count(sources, corpus, val_fraction, test_fraction, seed, progress_bar)
    info = _labels(corpus, census, base_items)
    symbols = [chr(LABEL_BASE + k) for k in range(len(info.labels))]
    vocab = _vocabulary({START, END, *census.chars, *symbols}, base_vocab)
    dtype = id_dtype(len(vocab))
    hasher = hashlib.sha256()
    _write(sources, corpus, out_dir, info, vocab, dtype, (val_fraction, test_fraction, seed), hasher)
    written = {name: (out_dir / f"{name}.bin.tmp").stat().st_size // dtype.itemsize for name in SPLITS}
    if written != census.sizes:
        raise CorpusError("the items changed between the two readings; was a file changed?")
    for name in SPLITS:
        (out_dir / f"{name}.bin.tmp").replace(out_dir / f"{name}.bin")
    records = {**info.to_json(), "items": census.items, "duplicates": census.total - len(census.seen),
               "split_seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction}
    meta = prepared_meta(vocab, dtype, census.sizes, hasher.hexdigest(), sources=[str(p) for p in sources],
                         corpus_config=asdict(corpus), records=records)
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    log.info("prepared %s: %s items (%s duplicates), vocabulary %d%s; items %s", out_dir,
             f"{census.total:,}", f"{records['duplicates']:,}", len(vocab),
             f", {len(info.labels)} labels" if info.labels else "",
             ", ".join(f"{k} {v:,}" for k, v in census.items.items()))
    return PreparedData(out_dir, vocab, meta, checked=set(SPLITS))


def _labels(corpus: CorpusConfig, census: _Census, base: ItemsInfo | None) -> ItemsInfo:
    """The labels in symbol order: a fine-tuned source's first, then the new ones, sorted."""
    if corpus.label_column is None:
        return ItemsInfo(corpus.records)
    old = list(base.labels) if base is not None else []
    labels = [*old, *sorted(set(census.labels) - set(old))]
    if len(labels) > MAX_LABELS:
        raise CorpusError(f"{len(labels):,} labels; at most {MAX_LABELS:,} are supported")
    return ItemsInfo(corpus.records, labels, [census.labels[x] for x in labels])


def _write(sources: Sequence[str | Path], corpus: CorpusConfig, out_dir: Path, info: ItemsInfo, vocab: Vocab,
           dtype: np.dtype, split: tuple[float, float, int], hasher) -> None:
    """The second pass: each item, as its symbols, into its split's (temporary) file."""
    val_fraction, test_fraction, seed = split
    lookup = {c: i for i, c in enumerate(vocab.chars)}
    files = {name: open(out_dir / f"{name}.bin.tmp", "wb") for name in SPLITS}  # noqa: SIM115
    try:
        draws = split_draws(seed)
        for record in iter_records(sources, corpus):
            name = split_of(next(draws), val_fraction, test_fraction)
            serial = info.symbol(record.label) + record.text + END
            ids = np.fromiter((lookup[c] for c in serial), dtype=dtype, count=len(serial))
            ids.tofile(files[name])
            hasher.update(serial.encode("utf-8"))
    finally:
        for f in files.values():
            f.close()


def _count(sources: Sequence[str | Path], corpus: CorpusConfig, val_fraction: float, test_fraction: float,
           seed: int, progress_bar: bool) -> _Census:
    """The first pass: characters, split sizes, item and label counts."""
    census, draws = _Census(), split_draws(seed)
    records = iter_records(sources, corpus)
    for record in tqdm(records, unit=" items", desc="prepare", disable=None if progress_bar else True,
                       leave=False):
        if corpus.label_column is not None and record.label is None:
            raise CorpusError(f"{record.where}: no label")
        census.add(record, split_of(next(draws), val_fraction, test_fraction))
    if census.items["train"] == 0:
        raise CorpusError("no item left to train on: the list is too short for its held-out split")
    return census


def _vocabulary(chars: set[str], base: Vocab | None) -> Vocab:
    """START and END first (ids 0 and 1), then the items' characters and the labels, sorted.

    With ``base`` (fine-tuning a records run) its symbols keep their ids, the new ones follow.
    """
    ordered = sorted(chars)
    if base is None:
        return Vocab(ordered)
    if base.chars[:2] != [START, END]:
        raise CorpusError("the source model was not trained on a list of items; fine-tune a records "
                          "run, or train a new run on this list")
    return Vocab([*base.chars, *(c for c in ordered if c not in base.index)])
