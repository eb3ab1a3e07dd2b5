"""data/items.py and data/prepare_items.py: a list of items split fairly by item, with labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from charlstm.config.corpus import CorpusConfig
from charlstm.data.items import END_ID, START_ID, split_draws, split_of
from charlstm.data.prepare_items import prepare_items
from charlstm.data.prepared import open_prepared
from charlstm.data.records import LABEL_BASE, START
from charlstm.errors import CorpusError
from charlstm.framing.items import item_bounds

NAMES = sorted(f"{a}{b}saurus" for a in "abcdefghijklmnopqrst" for b in "aeiou")  # 100, sorted


def _items(data, split: str) -> list[str]:
    ids = np.asarray(data.split(split))
    if len(ids) == 0:
        return []
    starts, ends = item_bounds(ids)
    return [data.vocab.decode(ids[s + 1 : e]) for s, e in zip(starts, ends, strict=True)]


def _prepare(tmp_path: Path, lines: list[str], **kwargs):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "list.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = {"val_fraction": 0.2, "test_fraction": 0.0, "seed": 7, "progress_bar": False, **kwargs}
    corpus = settings.pop("corpus", CorpusConfig(records="lines"))
    return prepare_items([path], tmp_path / "data", corpus=corpus, **settings)


def test_a_sorted_list_is_held_out_by_a_seeded_random_sample_of_items(tmp_path):
    data = _prepare(tmp_path, NAMES)
    train, val = _items(data, "train"), _items(data, "val")
    assert sorted(train + val) == NAMES and not set(train) & set(val)
    assert 8 <= len(val) <= 35  # about 20 of 100
    # Not the tail: the held-out items come from all over the alphabet.
    assert {name[0] for name in val} & set("abcde") and {name[0] for name in val} & set("pqrst")
    again = _prepare(tmp_path / "again", NAMES)
    assert _items(again, "val") == val  # the same seed, the same split
    other = _prepare(tmp_path / "other", NAMES, seed=8)
    assert _items(other, "val") != val
    records = json.loads((tmp_path / "data" / "meta.json").read_text(encoding="utf-8"))["records"]
    assert records["split_seed"] == 7 and records["items"]["val"] == len(val)
    assert records["items"]["train"] == len(train)


def test_the_start_and_end_are_ids_0_and_1_and_duplicates_are_kept_and_counted(tmp_path):
    data = _prepare(tmp_path, ["rex", "rex", "ankylo", "rex"], val_fraction=0.0)
    assert data.vocab.chars[START_ID] == START and data.vocab.index["\x03"] == END_ID
    assert sorted(_items(data, "train")) == ["ankylo", "rex", "rex", "rex"]
    assert data.meta["records"]["duplicates"] == 2
    assert open_prepared(tmp_path / "data").items.format == "lines"


def test_labels_are_symbols_of_their_own_in_the_starts_place(tmp_path):
    path = tmp_path / "dinos.csv"
    path.write_text("name,diet\ntrex,carnivore\nstego,herbivore\nallo,carnivore\n", encoding="utf-8")
    corpus = CorpusConfig(records="csv", text_column="name", label_column="diet")
    data = prepare_items([path], tmp_path / "data", corpus=corpus, val_fraction=0.0, test_fraction=0.0,
                         seed=0, progress_bar=False)
    info = data.items
    assert info.labels == ["carnivore", "herbivore"] and info.label_counts == [2, 1]
    ids = np.asarray(data.split("train"))
    starts, _ = item_bounds(ids)
    carnivore, herbivore = chr(LABEL_BASE), chr(LABEL_BASE + 1)
    assert [data.vocab.chars[ids[s]] for s in starts] == [carnivore, herbivore, carnivore]
    assert info.label_of(chr(LABEL_BASE + 1)) == "herbivore"
    with pytest.raises(CorpusError, match=r"unknown label 'omnivore'.*'carnivore', 'herbivore'"):
        info.symbol("omnivore")


def test_a_list_too_short_for_its_held_out_split_is_a_clear_error(tmp_path):
    with pytest.raises(CorpusError, match="no item left to train on"):
        _prepare(tmp_path, ["a"], val_fraction=0.99)


def test_split_draws_are_one_per_item_in_order():
    draws = split_draws(5)
    first = [next(draws) for _ in range(70_000)]  # across a block of draws
    again = split_draws(5)
    assert first == [next(again) for _ in range(70_000)]
    assert [split_of(d, 0.1, 0.1) for d in (0.05, 0.15, 0.5)] == ["val", "test", "train"]


def test_prepare_with_records_writes_a_list_that_train_reads(tmp_path):
    from _runs import invoke

    path = tmp_path / "names.txt"
    path.write_text("\n".join(NAMES) + "\n", encoding="utf-8")
    result = invoke("prepare", path, "--out", tmp_path / "data", "--records", "lines", "--seed", "3",
                    "--no-progress")
    assert result.exit_code == 0, result.output
    data = open_prepared(tmp_path / "data")
    assert data.items is not None and data.meta["records"]["split_seed"] == 3
    trained = invoke("train", tmp_path / "data", "--out", tmp_path / "run", "--hidden-size", "8",
                     "--num-layers", "1", "--batch-size", "4", "--max-steps", "3", "--no-progress")
    assert trained.exit_code == 0, trained.output
