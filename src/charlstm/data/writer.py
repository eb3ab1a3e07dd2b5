"""Prepared token files, the writing side: split sizes, the id dtype, the split files and meta.json.

``data.prepared`` reads what this writes (and defines the folder's names, ``META_FILE`` and
``SPLITS``). ``data.prepare`` streams a corpus of any size through ``SplitWriter``;
``write_prepared`` writes a text already in memory (a Keras import, tests).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from charlstm.config.train import check_split_fractions
from charlstm.data.prepared import META_FILE, SPLITS, PreparedData
from charlstm.data.vocab import Vocab
from charlstm.errors import CheckpointError, CorpusError


def check_out_dir(out_dir: Path, force: bool) -> None:
    """Refuse to prepare into a file, or into a folder that holds anything, unless ``force``."""
    if out_dir.exists() and not out_dir.is_dir():
        raise CheckpointError(f"{out_dir} exists and is not a folder; choose another --out")
    if not force and out_dir.is_dir() and any(out_dir.iterdir()):
        held = "prepared data" if (out_dir / META_FILE).exists() else "files"
        raise CheckpointError(f"{out_dir} already holds {held}; choose another folder, or --force to write "
                              "over it", hint="another --out, or --force")


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
