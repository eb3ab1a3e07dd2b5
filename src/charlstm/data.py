"""Ids to batches: prepared token files, splits, and the two framings.

A prepared data folder holds ``train.bin``, ``val.bin`` (and ``test.bin``) as
raw uint8/uint16 ids plus ``meta.json`` (vocabulary, counts, cleaning). Files
are read through ``np.memmap`` so a corpus never has to fit in memory.

Splits are contiguous, in text order: train | val | test. Validation is held
out text, never windows interleaved with training ones.

**Stream framing** (``stream``, char-rnn / torch-rnn style): the train ids are
cut into B equal rows, and batch k takes columns [k*T, (k+1)*T) of every row::

    ids:   a b c d e f g h i j k l m n o p q r s t u v w x     (B=2, T=3)
    row 0: a b c | d e f | g h i | j k l
    row 1: m n o | p q r | s t u | v w x
           batch0  batch1  batch2  batch3

so row n of batch k+1 continues row n of batch k, and the model's state can
carry from one batch to the next. Targets are the same grid shifted by one.

**Window framing** (``window``, the Keras tutorial): every window of T ids,
stride 1, predicts the one id after it; windows are shuffled each epoch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from charlstm.corpus import Vocab
from charlstm.errors import CorpusError

META_FILE = "meta.json"
SPLITS = ("train", "val", "test")


def id_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned type that holds every id."""
    if vocab_size <= 256:
        return np.dtype(np.uint8)
    if vocab_size <= 65536:
        return np.dtype(np.uint16)
    raise CorpusError(f"vocabulary of {vocab_size} symbols is above the 65,536 supported")


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> dict[str, int]:
    """Sizes of the contiguous train | val | test splits of ``n`` ids."""
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise CorpusError("val_fraction and test_fraction must be >= 0 and sum below 1")
    n_val = round(n * val_fraction)
    n_test = round(n * test_fraction)
    return {"train": n - n_val - n_test, "val": n_val, "test": n_test}


@dataclass(frozen=True)
class PreparedData:
    """A prepared data folder, opened lazily through memmaps."""

    root: Path
    vocab: Vocab
    meta: dict

    def split(self, name: str) -> np.ndarray:
        """The ids of one split as a read-only memmap (empty array if absent)."""
        size = self.meta["sizes"].get(name, 0)
        path = self.root / f"{name}.bin"
        if size == 0:
            return np.zeros(0, dtype=np.int64)
        dtype = np.dtype(self.meta["dtype"])
        if not path.exists() or path.stat().st_size != size * dtype.itemsize:
            raise CorpusError(f"{path}: missing or truncated (expected {size} ids)")
        return np.memmap(path, dtype=dtype, mode="r", shape=(size,))


def write_prepared(
    text: str, vocab: Vocab, out_dir: Path, *, val_fraction: float, test_fraction: float,
    extra_meta: dict | None = None,
) -> PreparedData:
    """Encode ``text`` and write its splits and ``meta.json`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    dtype = id_dtype(len(vocab))
    ids = vocab.encode(text).astype(dtype)
    sizes = split_sizes(len(ids), val_fraction, test_fraction)
    start = 0
    for name in SPLITS:
        part = ids[start : start + sizes[name]]
        start += sizes[name]
        if sizes[name]:
            part.tofile(out_dir / f"{name}.bin")
    meta = {
        "vocab": vocab.to_list(),
        "dtype": dtype.name,
        "sizes": sizes,
        "total_characters": len(ids),
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        **(extra_meta or {}),
    }
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return PreparedData(out_dir, vocab, meta)


def open_prepared(root: Path) -> PreparedData:
    """Open a folder written by ``write_prepared``."""
    meta_path = root / META_FILE
    if not meta_path.exists():
        raise CorpusError(f"{root}: not a prepared data folder (no {META_FILE})")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    return PreparedData(root, Vocab(meta["vocab"]), meta)


def to_tensor(ids: np.ndarray) -> torch.Tensor:
    """A copy of (a slice of) a memmap as int64, the dtype embeddings index with."""
    return torch.from_numpy(np.asarray(ids, dtype=np.int64))


class StreamBatches:
    """Contiguous (B, T) batches whose rows continue across batches (see module doc)."""

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int):
        self.batch_size, self.seq_len = batch_size, seq_len
        self.row_len = (len(ids) - 1) // batch_size
        if self.row_len < seq_len:
            raise CorpusError(
                f"text of {len(ids)} characters is too short for {batch_size} rows of "
                f"{seq_len}+1 characters; lower --batch-size or --seq-len"
            )
        n = batch_size * self.row_len
        # Views, not copies: slices of a memmap reshape without reading the file.
        self.inputs = ids[:n].reshape(batch_size, self.row_len)
        self.targets = ids[1 : n + 1].reshape(batch_size, self.row_len)

    def __len__(self) -> int:
        return self.row_len // self.seq_len

    def batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``k`` as (inputs, targets), each (B, T) int64."""
        cols = slice(k * self.seq_len, (k + 1) * self.seq_len)
        return to_tensor(self.inputs[:, cols]), to_tensor(self.targets[:, cols])

    def iterate(self, start: int = 0) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        for k in range(start, len(self)):
            yield (k, *self.batch(k))


class WindowBatches:
    """Shuffled batches of (window, next id) pairs, the Keras tutorial's framing.

    The order of epoch e is a permutation drawn from ``(seed, e)``, so a resumed
    run finds the same order from the epoch and batch counters alone. Windows
    are gathered per batch; the (patterns, T) array is never built.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, seed: int, shuffle: bool = True):
        self.ids = to_tensor(ids)
        self.batch_size, self.seq_len, self.seed, self.shuffle = batch_size, seq_len, seed, shuffle
        self.num_patterns = len(ids) - seq_len
        if self.num_patterns < 1:
            raise CorpusError(
                f"text of {len(ids)} characters is shorter than one window of {seq_len}+1"
            )
        self.offsets = torch.arange(seq_len)

    def __len__(self) -> int:
        return -(-self.num_patterns // self.batch_size)  # the last batch may be short, as in Keras

    def order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.num_patterns)
        rng = np.random.default_rng([self.seed, epoch])
        return torch.from_numpy(rng.permutation(self.num_patterns))

    def gather(self, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows beginning at ``starts``: inputs (B, T) and next ids (B,)."""
        index = starts[:, None] + self.offsets  # (B, T)
        return self.ids[index], self.ids[starts + self.seq_len]

    def iterate(self, epoch: int, start: int = 0) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        order = self.order(epoch)
        for k in range(start, len(self)):
            yield (k, *self.gather(order[k * self.batch_size : (k + 1) * self.batch_size]))
