"""Prepared token files: the splits of a corpus as ids on disk, read through memmaps.

A prepared data folder holds ``train.bin``, ``val.bin`` (and ``test.bin``) as
raw uint8/uint16 ids plus ``meta.json`` (vocabulary, counts, cleaning). Files
are read through ``np.memmap`` so a corpus never has to fit in memory.

Splits are contiguous, in text order: train | val | test. Validation is held
out text, never windows interleaved with training ones.

The framings cut the splits into batches (``charlstm.framing``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from charlstm.config.corpus import CorpusConfig
from charlstm.config.train import check_split_fractions
from charlstm.data.vocab import Vocab
from charlstm.errors import CharLSTMError, CorpusError

META_FILE = "meta.json"
SPLITS = ("train", "val", "test")
CHECK_IDS = 1 << 22  # ids read at a time when checking a split against the vocabulary


def id_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned type that holds every id."""
    if vocab_size <= 256:
        return np.dtype(np.uint8)
    if vocab_size <= 65535:
        return np.dtype(np.uint16)
    raise CorpusError(
        f"a vocabulary of {vocab_size:,} symbols is above the 65,535 supported; is this text "
        "(or --encoding) right? A character model wants a few hundred symbols at most"
    )


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> dict[str, int]:
    """Sizes of the contiguous train | val | test splits of ``n`` ids."""
    check_split_fractions(val_fraction, test_fraction)
    n_val = round(n * val_fraction)
    n_test = round(n * test_fraction)
    return {"train": n - n_val - n_test, "val": n_val, "test": n_test}


@dataclass(frozen=True)
class PreparedData:
    """A prepared data folder, opened lazily through memmaps."""

    root: Path
    vocab: Vocab
    meta: dict  # meta.json as written by ``prepared_meta``; read through the properties below
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


class SplitWriter:
    """Writes ids, in text order, into the split files of a data folder.

    Splits are filled one after another (train, then val, then test) from
    however many chunks arrive; files are written under temporary names and
    renamed by ``close``, so an interrupted write never leaves a folder that
    looks complete.
    """

    def __init__(self, out_dir: Path, sizes: dict[str, int], dtype: np.dtype):
        self.out_dir, self.sizes, self.dtype = out_dir, sizes, dtype
        self.order = [name for name in SPLITS if sizes[name]]
        self.current, self.written, self.file = -1, 0, None
        out_dir.mkdir(parents=True, exist_ok=True)
        self._next_file()

    def _next_file(self) -> None:
        if self.file:
            self.file.close()
        self.current += 1
        self.written = 0
        if self.current < len(self.order):
            # Held open across write() calls by design; close() or the next split closes it.
            self.file = open(self.out_dir / f"{self.order[self.current]}.bin.tmp", "wb")  # noqa: SIM115
        else:
            self.file = None

    def write(self, ids: np.ndarray) -> None:
        while len(ids):
            if self.file is None:
                raise CorpusError("more text than the split sizes announced")
            room = self.sizes[self.order[self.current]] - self.written
            part, ids = ids[:room], ids[room:]
            part.astype(self.dtype, copy=False).tofile(self.file)
            self.written += len(part)
            if self.written == self.sizes[self.order[self.current]]:
                self._next_file()

    def close(self, meta: dict) -> None:
        """Check every split is full, rename the files into place, write ``meta.json`` last."""
        if self.file is not None:
            self.file.close()
            raise CorpusError("the text ended before the split sizes announced; was a file changed?")
        for name in self.order:
            (self.out_dir / f"{name}.bin.tmp").replace(self.out_dir / f"{name}.bin")
        (self.out_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def prepared_meta(vocab: Vocab, dtype: np.dtype, sizes: dict[str, int], sha256: str, **extra) -> dict:
    return {"vocab": vocab.to_list(), "dtype": dtype.name, "sizes": sizes,
            "total_characters": sum(sizes.values()), "sha256": sha256, **extra}


def write_prepared(
    text: str, vocab: Vocab, out_dir: Path, *, val_fraction: float, test_fraction: float,
    extra_meta: dict | None = None,
) -> PreparedData:
    """Encode a text held in memory and write its splits and ``meta.json`` into ``out_dir``."""
    dtype = id_dtype(len(vocab))
    sizes = split_sizes(len(text), val_fraction, test_fraction)
    writer = SplitWriter(out_dir, sizes, dtype)
    writer.write(vocab.encode(text))
    meta = prepared_meta(vocab, dtype, sizes, hashlib.sha256(text.encode("utf-8")).hexdigest(),
                         **(extra_meta or {}))
    writer.close(meta)
    return PreparedData(out_dir, vocab, meta, checked=set(SPLITS))  # encoded from the vocabulary


def open_prepared(root: Path) -> PreparedData:
    """Open a folder written by ``write_prepared``."""
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

