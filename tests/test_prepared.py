"""data.prepared: prepared token files read back as written; stream batches and window batches."""

from __future__ import annotations

import hashlib
import itertools
import json

import numpy as np
import pytest
import torch

from charlstm.data import prepared as data
from charlstm.data.prepared import open_prepared
from charlstm.data.vocab import Vocab
from charlstm.data.writer import id_dtype, split_sizes, write_prepared
from charlstm.errors import CorpusError
from charlstm.framing.stream import StreamBatches
from charlstm.framing.window import WindowBatches

# --- prepared token files -----------------------------------------------------------------------


def test_prepared_round_trip_is_contiguous_train_val_test(tmp_path, tiny_text):
    vocab = Vocab.from_text(tiny_text)
    written = write_prepared(
        tiny_text, vocab, tmp_path / "prep", val_fraction=0.1, test_fraction=0.05,
        extra_meta={"source": "tiny"},
    )
    opened = open_prepared(tmp_path / "prep")
    assert opened.vocab == vocab
    assert opened.meta == written.meta
    assert opened.meta["source"] == "tiny"
    assert opened.meta["total_characters"] == len(tiny_text)
    assert opened.meta["sha256"] == hashlib.sha256(tiny_text.encode("utf-8")).hexdigest()
    assert opened.meta["sizes"] == split_sizes(len(tiny_text), 0.1, 0.05)

    parts = [opened.split(name) for name in data.SPLITS]
    for name, part in zip(data.SPLITS, parts, strict=True):
        assert part.dtype == np.uint8
        assert (tmp_path / "prep" / f"{name}.bin").stat().st_size == len(part)
        assert len(part) == opened.meta["sizes"][name]
    # In text order: train | val | test, nothing interleaved.
    np.testing.assert_array_equal(np.concatenate(parts).astype(np.int64), vocab.encode(tiny_text))
    assert vocab.decode(parts[1]) == tiny_text[len(parts[0]) : len(parts[0]) + len(parts[1])]


def test_empty_split_has_no_file_and_reads_empty(tmp_path, tiny_text):
    vocab = Vocab.from_text(tiny_text)
    prepared = write_prepared(tiny_text, vocab, tmp_path, val_fraction=0.1, test_fraction=0)
    assert not (tmp_path / "test.bin").exists()
    assert len(prepared.split("test")) == 0


def test_large_vocab_is_stored_as_uint16(tmp_path):
    chars = [chr(0x4E00 + i) for i in range(300)]  # 300 distinct CJK characters
    text = "".join(chars) * 3
    vocab = Vocab.from_text(text)
    prepared = write_prepared(text, vocab, tmp_path, val_fraction=0.0, test_fraction=0.0)
    assert prepared.meta["dtype"] == "uint16"
    train = open_prepared(tmp_path).split("train")
    assert train.dtype == np.uint16
    assert (tmp_path / "train.bin").stat().st_size == 2 * len(text)
    assert vocab.decode(train) == text  # ids above 255 survive


def test_truncated_bin_is_a_corpus_error(tmp_path, tiny_text):
    write_prepared(tiny_text, Vocab.from_text(tiny_text), tmp_path, val_fraction=0.1, test_fraction=0.0)
    train_bin = tmp_path / "train.bin"
    train_bin.write_bytes(train_bin.read_bytes()[:-1])
    with pytest.raises(CorpusError, match="truncated") as info:
        open_prepared(tmp_path).split("train")
    assert str(train_bin) in str(info.value)


def test_missing_bin_is_a_corpus_error(tmp_path, tiny_text):
    write_prepared(tiny_text, Vocab.from_text(tiny_text), tmp_path, val_fraction=0.1, test_fraction=0.0)
    (tmp_path / "val.bin").unlink()
    with pytest.raises(CorpusError):
        open_prepared(tmp_path).split("val")


@pytest.mark.parametrize("extra", [0, 300])  # uint8 ids, and uint16 ids (a vocabulary above 256)
def test_an_id_beyond_the_vocabulary_is_found_in_any_piece_and_named(tmp_path, tiny_text, monkeypatch, extra):
    text = tiny_text + "".join(chr(0x400 + i) for i in range(extra))
    vocab = Vocab.from_text(text)
    write_prepared(text, vocab, tmp_path, val_fraction=0.1, test_fraction=0.0)
    dtype = id_dtype(len(vocab))
    ids = np.fromfile(tmp_path / "train.bin", dtype=dtype)
    ids[1234] = len(vocab) + 2  # a damaged or edited folder
    ids.tofile(tmp_path / "train.bin")
    pieces = []
    real_fromfile = np.fromfile

    def fromfile(*args, **kwargs):
        pieces.append(kwargs["count"])
        return real_fromfile(*args, **kwargs)

    monkeypatch.setattr(data, "CHECK_IDS", 100)
    monkeypatch.setattr(np, "fromfile", fromfile)
    folder = open_prepared(tmp_path)
    assert len(folder.split("val")) and max(pieces) == 100  # read in bounded pieces, not mapped whole
    with pytest.raises(CorpusError) as info:
        folder.split("train")
    message = str(info.value)
    assert str(tmp_path / "train.bin") in message and f"id {len(vocab) + 2} at position 1234" in message
    assert f"vocabulary size {len(vocab)}" in message and "prepare the text again" in message


def test_a_split_is_checked_once_and_not_at_all_when_just_written(tmp_path, tiny_text, monkeypatch):
    checked = []
    real_check = data.check_ids
    monkeypatch.setattr(data, "check_ids", lambda path, *a: checked.append(path.name) or real_check(path, *a))
    written = write_prepared(tiny_text, Vocab.from_text(tiny_text), tmp_path, val_fraction=0.1,
                             test_fraction=0.0)
    written.split("train")
    assert checked == []  # its ids came from the vocabulary a moment ago
    folder = open_prepared(tmp_path)
    for _ in range(3):
        folder.split("train")
    assert checked == ["train.bin"]


def test_eval_and_resume_on_a_damaged_split_are_one_line_errors(tmp_path):
    import shutil

    from _runs import invoke, train_stream_run, write_text

    run = train_stream_run(tmp_path / "run", write_text(tmp_path / "t.txt", words=300))
    size = len(open_prepared(run / "data").vocab)
    for name, command in (("val", ("eval", run)), ("train", ("train", "--resume", run, "--no-progress"))):
        damaged = tmp_path / f"damaged-{name}"
        shutil.copytree(run, damaged)
        split = damaged / "data" / f"{name}.bin"
        ids = np.fromfile(split, dtype=np.uint8)
        ids[5] = 200
        ids.tofile(split)
        result = invoke(*(damaged if part == run else part for part in command))
        assert result.exit_code == 3, result.output
        assert result.stderr.splitlines() == [f"charlstm: error: {split}: id 200 at position 5 is not below "
                                              f"the vocabulary size {size}; the data folder is damaged: "
                                              "prepare the text again"]


def test_folder_without_meta_is_a_corpus_error(tmp_path):
    with pytest.raises(CorpusError, match=data.META_FILE):
        open_prepared(tmp_path)


def test_meta_is_plain_json(tmp_path, tiny_text):
    write_prepared(tiny_text, Vocab.from_text(tiny_text), tmp_path, val_fraction=0.0, test_fraction=0.0)
    meta = json.loads((tmp_path / data.META_FILE).read_text(encoding="utf-8"))
    assert meta["vocab"] == sorted(set(tiny_text))


# --- stream framing ------------------------------------------------------------------------------


@pytest.mark.parametrize(("batch_size", "seq_len"), [(2, 3), (3, 5), (4, 7)])
def test_stream_rows_continue_across_batches(batch_size, seq_len):
    # Ids equal to their positions make "followed by in the original sequence" checkable.
    ids = np.arange(101, dtype=np.int64)
    stream = StreamBatches(ids, batch_size, seq_len)
    batches = [stream.batch(k) for k in range(len(stream))]
    assert len(batches) == ((len(ids) - 1) // batch_size) // seq_len >= 2
    for (x, _), (x_next, _) in itertools.pairwise(batches):
        for row in range(batch_size):
            assert int(x_next[row, 0]) == int(x[row, -1]) + 1
    for x, y in batches:
        assert x.shape == y.shape == (batch_size, seq_len)
        assert x.dtype == y.dtype == torch.int64
        torch.testing.assert_close(y, x + 1)  # targets: the next id of the sequence


def test_stream_batches_read_the_real_text_row_by_row(tmp_path, tiny_text):
    vocab = Vocab.from_text(tiny_text)
    ids = write_prepared(tiny_text, vocab, tmp_path, val_fraction=0.0, test_fraction=0.0).split("train")
    batch_size, seq_len = 4, 16
    stream = StreamBatches(ids, batch_size, seq_len)  # over the uint8 memmap
    row_len = (len(tiny_text) - 1) // batch_size
    # Row n of the stream, read batch after batch, is one contiguous stretch of the text.
    rows = [""] * batch_size
    target_rows = [""] * batch_size
    for k, x, y in stream.iterate(0):
        assert k < len(stream)
        for n in range(batch_size):
            rows[n] += vocab.decode(x[n])
            target_rows[n] += vocab.decode(y[n])
    covered = len(stream) * seq_len
    for n in range(batch_size):
        assert rows[n] == tiny_text[n * row_len : n * row_len + covered]
        assert target_rows[n] == tiny_text[n * row_len + 1 : n * row_len + covered + 1]


def test_stream_iterate_starts_at_a_batch():
    stream = StreamBatches(np.arange(200), batch_size=2, seq_len=5)
    resumed = list(stream.iterate(0, start=3))
    assert [k for k, _, _ in resumed] == list(range(3, len(stream)))
    torch.testing.assert_close(resumed[0][1], stream.batch(3)[0])


def test_stream_needs_one_sequence_per_row():
    StreamBatches(np.arange(2 * 5 + 1), batch_size=2, seq_len=5)  # just enough: one batch
    with pytest.raises(CorpusError, match="too short"):
        StreamBatches(np.arange(2 * 5), batch_size=2, seq_len=5)


# --- window framing ------------------------------------------------------------------------------


def _windows(batches: WindowBatches, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x, y) for _, x, y in batches.iterate(epoch)]


def test_each_window_predicts_the_id_after_it():
    ids = np.arange(50, dtype=np.int64)
    seq_len = 6
    for x, y in _windows(WindowBatches(ids, batch_size=8, seq_len=seq_len, seed=0), epoch=0):
        assert x.shape[1] == seq_len and y.shape == (x.shape[0],)
        torch.testing.assert_close(x, x[:, :1] + torch.arange(seq_len))  # consecutive ids
        torch.testing.assert_close(y, x[:, -1] + 1)


def test_windows_over_real_text(tiny_text):
    vocab = Vocab.from_text(tiny_text)
    batches = WindowBatches(vocab.encode(tiny_text), batch_size=64, seq_len=10, seed=1)
    x, y = _windows(batches, epoch=0)[0]
    for row in range(x.shape[0]):
        window = vocab.decode(x[row])
        start = int(batches.order(0)[row])
        assert window == tiny_text[start : start + 10]
        assert vocab.decode([y[row]]) == tiny_text[start + 10]


def test_every_pattern_appears_once_per_epoch_and_last_batch_is_short():
    ids = np.arange(60, dtype=np.int64)
    batches = WindowBatches(ids, batch_size=8, seq_len=5, seed=3)
    num_patterns = len(ids) - 5
    assert batches.num_patterns == num_patterns
    for epoch in (0, 1):
        windows = _windows(batches, epoch)
        sizes = [len(y) for _, y in windows]
        assert len(windows) == len(batches) == -(-num_patterns // 8)
        assert sizes == [8] * (len(windows) - 1) + [num_patterns % 8]
        starts = torch.cat([x[:, 0] for x, _ in windows])
        assert sorted(starts.tolist()) == list(range(num_patterns))


def test_order_depends_only_on_seed_and_epoch():
    ids = np.arange(300, dtype=np.int64)
    first = WindowBatches(ids, batch_size=16, seq_len=4, seed=7)
    second = WindowBatches(ids, batch_size=16, seq_len=4, seed=7)
    torch.testing.assert_close(first.order(2), second.order(2))
    epoch_2 = torch.cat([x[:, 0] for x, _ in _windows(first, 2)])
    torch.testing.assert_close(epoch_2, torch.cat([x[:, 0] for x, _ in _windows(second, 2)]))
    assert not torch.equal(first.order(2), first.order(3))
    assert not torch.equal(first.order(2), WindowBatches(ids, 16, 4, seed=8).order(2))
    assert not torch.equal(first.order(2), torch.arange(first.num_patterns))  # it does shuffle


def test_resumed_window_iteration_matches_the_rest_of_the_epoch():
    batches = WindowBatches(np.arange(100), batch_size=8, seq_len=4, seed=0)
    whole = _windows(batches, epoch=1)
    resumed = [(x, y) for _, x, y in batches.iterate(1, start=5)]
    assert len(resumed) == len(whole) - 5
    for (x, y), (x_whole, y_whole) in zip(resumed, whole[5:], strict=True):
        torch.testing.assert_close(x, x_whole)
        torch.testing.assert_close(y, y_whole)


def test_unshuffled_windows_are_in_text_order():
    batches = WindowBatches(np.arange(30), batch_size=4, seq_len=3, seed=0, shuffle=False)
    starts = torch.cat([x[:, 0] for x, _ in _windows(batches, epoch=5)])
    assert starts.tolist() == list(range(27))


def test_window_needs_one_pattern():
    assert len(WindowBatches(np.arange(6), batch_size=4, seq_len=5, seed=0)) == 1
    with pytest.raises(CorpusError, match="shorter than one window"):
        WindowBatches(np.arange(5), batch_size=4, seq_len=5, seed=0)
