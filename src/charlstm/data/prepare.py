"""Prepare a corpus of any size into token files, never holding it whole in memory.

Two streaming passes over the files: the first cleans the text and collects
its characters (the vocabulary) and its length; the second cleans it again,
encodes each piece through a code-point lookup table and appends the ids to
the split files. Memory stays at a few pieces of ``CHUNK_BYTES`` whatever the
corpus size and its line lengths (a file of one 100 MB line streams like any
other). The splits are contiguous, in text order: train | val | test.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from charlstm.config.corpus import CorpusConfig
from charlstm.config.train import check_split_fractions
from charlstm.data.prepared import SPLITS, PreparedData
from charlstm.data.sources import iter_clean, list_sources
from charlstm.data.vocab import Vocab
from charlstm.data.writer import SplitWriter, check_out_dir, id_dtype, prepared_meta, split_sizes
from charlstm.errors import CorpusError

log = logging.getLogger(__name__)

MAX_CODE_POINT = 0x110000


def _code_points(text: str) -> np.ndarray:
    """The text's code points, without a Python loop over characters.

    ASCII text (most corpora, most pieces) takes a one-byte path several times faster
    than the general four-byte one.
    """
    if text.isascii():
        return np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def _mark_seen(seen: np.ndarray, text: str) -> None:
    """Set ``seen[c]`` for every code point ``c`` of ``text``."""
    if text.isascii():
        # Delete the bytes already seen: what is left (usually nothing) is new. One C pass.
        known = bytes(np.flatnonzero(seen[:128]).astype(np.uint8))
        new = text.encode("ascii").translate(None, known)
        seen[list(set(new))] = True
    else:
        seen[np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)] = True


def _vocabulary(seen: np.ndarray, base: Vocab | None) -> Vocab:
    """The characters seen, sorted; after ``base``'s, in its order, when given."""
    chars = [chr(c) for c in np.flatnonzero(seen)]
    if base is None:
        return Vocab(chars)
    return Vocab([*base.chars, *(c for c in chars if c not in base.index)])


def prepare_corpus(
    sources: Sequence[str | Path],
    out_dir: str | Path,
    *,
    corpus: CorpusConfig | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    progress_bar: bool = True,
    base_vocab: Vocab | None = None,
    force: bool = False,
) -> PreparedData:
    """Clean, build the vocabulary, and write ``train/val/test.bin`` and ``meta.json``.

    With ``base_vocab`` (fine-tuning) its characters keep their ids and the text's others follow.
    ``out_dir`` must be new or empty unless ``force``.
    """
    out_dir, corpus = Path(out_dir), corpus or CorpusConfig()
    check_split_fractions(val_fraction, test_fraction)  # before a pass over a corpus of any size
    check_out_dir(out_dir, force)
    files = list_sources(sources)
    total_bytes = sum(p.stat().st_size for p in files)

    seen = np.zeros(MAX_CODE_POINT, dtype=bool)
    length = 0
    # disable=None: a bar on a terminal only; in a file or a pipe its frames would pile up.
    with tqdm(total=2 * total_bytes, unit="B", unit_scale=True, desc="prepare",
              disable=None if progress_bar else True, leave=False) as bar:
        for piece in iter_clean(files, corpus, on_bytes=bar.update):
            _mark_seen(seen, piece)
            length += len(piece)
        if length == 0:
            raise CorpusError("the text is empty after cleaning")
        vocab = _vocabulary(seen, base_vocab)
        dtype = id_dtype(len(vocab))
        lookup = np.zeros(MAX_CODE_POINT, dtype=dtype)
        lookup[[ord(c) for c in vocab.chars]] = np.arange(len(vocab), dtype=dtype)
        sizes = split_sizes(length, val_fraction, test_fraction)
        writer = SplitWriter(out_dir, sizes, dtype)
        hasher = hashlib.sha256()
        for piece in iter_clean(files, corpus, on_bytes=bar.update, warn=False):  # the first pass warned
            writer.write(lookup[_code_points(piece)])
            hasher.update(piece.encode("utf-8"))
    meta = prepared_meta(vocab, dtype, sizes, hasher.hexdigest(), sources=[str(p) for p in files],
                         corpus_config=asdict(corpus))
    writer.close(meta)
    log.info("prepared %s: %d characters, vocabulary %d, %s", out_dir, length, len(vocab),
             ", ".join(f"{k} {v}" for k, v in sizes.items()))
    return PreparedData(out_dir, vocab, meta, checked=set(SPLITS))  # every id came from the lookup
