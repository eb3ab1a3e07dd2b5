"""Prepared token files, the reading side: the splits of a corpus as ids on disk, read through memmaps.

A prepared data folder holds ``train.bin``, ``val.bin`` (and ``test.bin``) as
raw uint8/uint16 ids plus ``meta.json`` (vocabulary, counts, cleaning). Files
are read through ``np.memmap`` so a corpus never has to fit in memory.

Splits are contiguous, in text order: train | val | test. Validation is held
out text, never windows interleaved with training ones.

``data.writer`` writes these folders; the framings cut the splits into batches (``charlstm.framing``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from charlstm.config.corpus import CorpusConfig
from charlstm.data.items import ItemsInfo
from charlstm.data.vocab import Vocab
from charlstm.errors import CharLSTMError, CorpusError

META_FILE = "meta.json"
SPLITS = ("train", "val", "test")
CHECK_IDS = 1 << 22  # ids read at a time when checking a split against the vocabulary


@dataclass(frozen=True)
class PreparedData:
    """A prepared data folder, opened lazily through memmaps."""

    root: Path
    vocab: Vocab
    meta: dict  # meta.json as ``data.writer.prepared_meta`` wrote it; read through the properties below
    # Splits known to hold only ids of the vocabulary: checked once, or written from it just now.
    checked: set[str] = field(default_factory=set, compare=False, repr=False)

    @property
    def sha256(self) -> str:
        """Of the cleaned text: a resumed run checks it trains on the same data."""
        return self.meta["sha256"]

    @property
    def sizes(self) -> dict[str, int]:
        return self.meta["sizes"]

    @property
    def total_characters(self) -> int:
        return self.meta["total_characters"]

    @property
    def corpus_config(self) -> CorpusConfig | None:
        """How the text was cleaned, when the folder records it."""
        recorded = self.meta.get("corpus_config")
        return None if recorded is None else CorpusConfig(**recorded)

    @property
    def items(self) -> ItemsInfo | None:
        """A list of items' labels and format (``data.items``); None for a running text."""
        raw = self.meta.get("records")
        return None if raw is None else ItemsInfo.from_json(raw)

    def split(self, name: str) -> np.ndarray:
        """The ids of one split as a read-only memmap (empty array if absent)."""
        size = self.meta["sizes"].get(name, 0)
        path = self.root / f"{name}.bin"
        if size == 0:
            return np.zeros(0, dtype=np.int64)
        dtype = np.dtype(self.meta["dtype"])
        if not path.exists() or path.stat().st_size != size * dtype.itemsize:
            raise CorpusError(f"{path}: missing or truncated (expected {size} ids)")
        if name not in self.checked:
            check_ids(path, dtype, len(self.vocab))
            self.checked.add(name)
        return np.memmap(path, dtype=dtype, mode="r", shape=(size,))


def check_ids(path: Path, dtype: np.dtype, vocab_size: int) -> None:
    """Refuse a split file holding an id the vocabulary lacks (a damaged or edited folder):
    the embedding would fail on it mid-run with an IndexError.

    Read through a small buffer, not the memmap: paging a 1 GB split in through a memmap
    would add its size to the process's resident memory. It costs one read of the file at
    memory speed, and nothing when every value the dtype holds is an id.
    """
    if vocab_size > np.iinfo(dtype).max:
        return
    offset = 0
    try:
        with open(path, "rb") as f:
            while len(ids := np.fromfile(f, dtype=dtype, count=CHECK_IDS)):
                if ids.max() >= vocab_size:
                    bad = int(np.flatnonzero(ids >= vocab_size)[0])
                    raise CorpusError(f"{path}: id {int(ids[bad])} at position {offset + bad} is not "
                                      f"below the vocabulary size {vocab_size}; the data folder is "
                                      "damaged: prepare the text again")
                offset += len(ids)
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def open_prepared(root: Path) -> PreparedData:
    """Open a folder written by ``data.writer`` (``prepare_corpus`` or ``write_prepared``)."""
    meta_path = root / META_FILE
    if not meta_path.exists():
        raise CorpusError(f"{root}: not a prepared data folder (no {META_FILE})")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        data = PreparedData(root, Vocab(meta["vocab"]), meta)
        _ = data.sha256, data.sizes, data.total_characters, data.corpus_config, np.dtype(meta["dtype"])
    except (OSError, ValueError, KeyError, TypeError, CharLSTMError) as exc:
        raise CorpusError(f"{meta_path}: unreadable or damaged ({exc}); prepare the text again") from None
    return data


def to_tensor(ids: np.ndarray) -> torch.Tensor:
    """A copy of (a slice of) a memmap as int64, the dtype embeddings index with."""
    return torch.from_numpy(np.asarray(ids, dtype=np.int64))

