"""data.writer: split sizes, the id dtype, and split files that never look complete when they are not."""

from __future__ import annotations

import numpy as np
import pytest

from charlstm.data.prepared import META_FILE
from charlstm.data.writer import SplitWriter, id_dtype, split_sizes
from charlstm.errors import ConfigError, CorpusError


@pytest.mark.parametrize("n", [0, 1, 7, 100, 4557])
@pytest.mark.parametrize(("val", "test"), [(0.0, 0.0), (0.1, 0.0), (0.1, 0.05), (0.45, 0.45)])
def test_split_sizes_cover_the_text(n, val, test):
    sizes = split_sizes(n, val, test)
    assert list(sizes) == ["train", "val", "test"]
    assert sum(sizes.values()) == n
    assert all(size >= 0 for size in sizes.values())
    assert abs(sizes["val"] - n * val) <= 0.5
    assert abs(sizes["test"] - n * test) <= 0.5


@pytest.mark.parametrize(("val", "test"), [(-0.1, 0.0), (0.0, -0.1), (1.0, 0.0), (0.5, 0.5), (0.9, 0.2),
                                           (float("nan"), 0.0), (0.0, float("inf"))])
def test_split_sizes_reject_bad_fractions(val, test):
    with pytest.raises(ConfigError, match="fraction"):
        split_sizes(100, val, test)


@pytest.mark.parametrize(
    ("vocab_size", "dtype"), [(1, np.uint8), (256, np.uint8), (257, np.uint16), (65535, np.uint16)]
)
def test_id_dtype_is_the_smallest_that_fits(vocab_size, dtype):
    assert id_dtype(vocab_size) == np.dtype(dtype)
    assert np.iinfo(id_dtype(vocab_size)).max >= vocab_size - 1


def test_id_dtype_refuses_above_65535():
    with pytest.raises(CorpusError, match="65,535"):
        id_dtype(65536)


def test_splits_fill_in_order_from_chunks_of_any_size(tmp_path):
    writer = SplitWriter(tmp_path, {"train": 5, "val": 3, "test": 0}, np.dtype(np.uint8))
    for chunk in (np.arange(2), np.arange(2, 7), np.arange(7, 8)):  # one chunk spans train and val
        writer.write(chunk)
    writer.close({"done": True})
    assert np.fromfile(tmp_path / "train.bin", dtype=np.uint8).tolist() == [0, 1, 2, 3, 4]
    assert np.fromfile(tmp_path / "val.bin", dtype=np.uint8).tolist() == [5, 6, 7]
    assert not (tmp_path / "test.bin").exists() and (tmp_path / META_FILE).exists()


def test_a_short_or_long_text_leaves_no_folder_that_looks_complete(tmp_path):
    short = SplitWriter(tmp_path / "short", {"train": 5, "val": 3, "test": 0}, np.dtype(np.uint8))
    short.write(np.arange(6))
    with pytest.raises(CorpusError, match="ended before"):
        short.close({})
    assert sorted(p.name for p in (tmp_path / "short").iterdir()) == ["train.bin.tmp", "val.bin.tmp"]
    long = SplitWriter(tmp_path / "long", {"train": 2, "val": 0, "test": 0}, np.dtype(np.uint8))
    with pytest.raises(CorpusError, match="more text"):
        long.write(np.arange(3))
    assert not (tmp_path / "long" / META_FILE).exists()
