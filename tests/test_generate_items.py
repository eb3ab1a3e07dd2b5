"""generation/items.py and ``generate --items``: whole new items, labels, new-only, scores."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from _runs import TINY_MODEL, invoke
from _serving import NAMES, tiny_items_run
from charlstm.config.sample import SampleConfig
from charlstm.data.prepared import open_prepared
from charlstm.errors import ConfigError, CorpusError
from charlstm.framing.items import item_bounds
from charlstm.generation.items import generate_items, score_items, training_items
from charlstm.runs.loading import load_model
from charlstm.training import session as api

SETTINGS = {**TINY_MODEL, "batch_size": 8, "max_steps": 40, "eval_every": 20, "lr": 1e-2}


@pytest.fixture(scope="module")
def names_run(tmp_path_factory) -> Path:
    return tiny_items_run(tmp_path_factory)


@pytest.fixture(scope="module")
def labelled_run(tmp_path_factory) -> Path:
    return tiny_items_run(tmp_path_factory, labelled=True)


def test_a_list_trains_in_the_items_framing_and_records_its_split(names_run):
    loaded = load_model(names_run)
    assert loaded.meta.train_config.framing == "items" and loaded.meta.items.format == "lines"
    assert training_items(loaded) <= set(NAMES)


def test_items_are_whole_and_marked_new_or_known_and_scored(names_run):
    loaded = load_model(names_run)
    draw = generate_items(loaded, 12, SampleConfig(seed=1))
    assert len(draw.items) == 12 and draw.drawn == 12
    known = training_items(loaded)
    for item in draw.items:
        assert "\x02" not in item.text and "\x03" not in item.text and "\n" not in item.text
        assert item.novel == (item.text not in known)
        assert item.logprob < 0 and math.isfinite(item.logprob)
    assert draw.new == sum(item.novel for item in draw.items)
    again = generate_items(loaded, 12, SampleConfig(seed=1))
    assert [i.text for i in again.items] == [i.text for i in draw.items]  # the seed decides


def test_the_score_is_the_sum_of_the_models_log_probabilities(names_run):
    import torch

    loaded = load_model(names_run)
    [score] = score_items(loaded, [(None, "bal")])
    ids = torch.as_tensor(loaded.vocab.encode("\x02bal\x03"))
    with torch.no_grad():
        logits, _ = loaded.model(ids[None, :-1])
    expected = logits[0].log_softmax(-1).gather(-1, ids[1:, None]).sum().item()
    assert score == pytest.approx(expected, rel=1e-5)


def test_a_prefix_starts_every_item_and_an_item_that_never_ends_is_cut_and_flagged(names_run):
    loaded = load_model(names_run)
    draw = generate_items(loaded, 5, SampleConfig(seed=2), prompt="ka")
    assert all(item.text.startswith("ka") for item in draw.items)
    cut = generate_items(loaded, 3, SampleConfig(seed=2, temperature=50.0), max_item_chars=4)
    assert all(len(item.text) <= 4 for item in cut.items)
    assert any(not item.complete for item in cut.items)


def test_new_only_keeps_only_items_not_in_the_training_list(names_run):
    loaded = load_model(names_run)
    draw = generate_items(loaded, 5, SampleConfig(seed=3, temperature=1.5), new_only=True)
    assert all(item.novel for item in draw.items)
    assert draw.drawn >= len(draw.items) and draw.new_share is not None


def test_items_of_a_label_and_labels_drawn_by_their_counts(labelled_run):
    loaded = load_model(labelled_run)
    assert loaded.meta.items.labels == ["big", "small"]
    draw = generate_items(loaded, 6, SampleConfig(seed=4), labels=["big"])
    assert {item.label for item in draw.items} == {"big"}
    mixed = generate_items(loaded, 40, SampleConfig(seed=5))
    assert {item.label for item in mixed.items} == {"big", "small"}
    with pytest.raises(CorpusError, match=r"unknown label 'huge'.*'big', 'small'"):
        generate_items(loaded, 1, SampleConfig(), labels=["huge"])


def test_items_need_a_model_of_a_list(tmp_path):
    from _runs import train_stream_run, write_text

    run = train_stream_run(tmp_path / "run", write_text(tmp_path / "t.txt"))
    with pytest.raises(ConfigError, match="not a list of items"):
        generate_items(load_model(run), 1, SampleConfig())


def test_generate_prints_items_one_per_line_and_json_lines(names_run):
    plain = invoke("generate", names_run, "--items", "7", "--seed", "1")
    assert plain.exit_code == 0, plain.output
    assert len(plain.stdout.splitlines()) == 7 and "not in the training list" in plain.stderr
    as_json = invoke("generate", names_run, "--items", "3", "--json", "--seed", "1")
    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [r["text"] for r in records] == plain.stdout.splitlines()[:3]
    assert set(records[0]) == {"text", "label", "novel", "logprob", "chars", "complete"}


def test_generate_refuses_labels_the_model_lacks(names_run, labelled_run):
    result = invoke("generate", labelled_run, "--items", "2", "--label", "huge")
    assert result.exit_code == 3 and "'big', 'small'" in result.output
    result = invoke("generate", names_run, "--items", "2", "--label", "big")
    assert result.exit_code == 2 and "trained without labels" in result.output


def test_a_sorted_list_through_the_cli_with_a_csv_of_quoted_commas_and_newlines(tmp_path):
    path = tmp_path / "titles.csv"
    path.write_text('title,kind\n"Dogs, cats",pets\n"Two\nlines",poem\n' + "".join(
        f"title {i},{'pets' if i % 2 else 'poem'}\n" for i in range(60)), encoding="utf-8")
    out = tmp_path / "run"
    result = invoke("train", path, "--out", out, "--records", "csv", "--label-column", "kind",
                    "--hidden-size", "8", "--num-layers", "1", "--batch-size", "4", "--max-steps", "4",
                    "--no-progress")
    assert result.exit_code == 0, result.output
    data = open_prepared(out / "data")
    items = []
    for split in ("train", "val"):
        ids = np.asarray(data.split(split))
        if len(ids):
            starts, ends = item_bounds(ids)
            items += [data.vocab.decode(ids[s + 1 : e]) for s, e in zip(starts, ends, strict=True)]
    assert len(items) == 62 and {"Dogs, cats", "Two\nlines"} <= set(items)


def test_a_list_trains_only_in_the_items_framing_and_items_need_a_list(tmp_path):
    from _runs import write_text

    names = tmp_path / "names.txt"
    names.write_text("\n".join(NAMES) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="items framing, not stream"):
        api.train([names], out_dir=tmp_path / "a", records="lines", framing="stream", **SETTINGS)
    with pytest.raises(ConfigError, match="needs a list of things"):
        api.train([write_text(tmp_path / "t.txt")], out_dir=tmp_path / "b", framing="items", **SETTINGS)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_fine_tune_of_a_list_keeps_its_labels_and_adds_new_ones(labelled_run, tmp_path):
    path = tmp_path / "more.csv"
    path.write_text("name,size\n" + "".join(f"zor{i},{'tiny' if i % 2 else 'big'}\n" for i in range(40)),
                    encoding="utf-8")
    api.train([path], out_dir=tmp_path / "tuned", init_from=str(labelled_run), records="csv",
              text_column="name", label_column="size", max_steps=3, batch_size=4)
    info = load_model(tmp_path / "tuned").meta.items
    assert info.labels == ["big", "small", "tiny"]  # the source's first, in their order


def test_a_list_cannot_fine_tune_a_model_of_running_text(tmp_path):
    from _runs import train_stream_run, write_text

    source = train_stream_run(tmp_path / "text-run", write_text(tmp_path / "t.txt"))
    names = tmp_path / "names.txt"
    names.write_text("\n".join(NAMES) + "\n", encoding="utf-8")
    with pytest.raises((ConfigError, CorpusError)):
        api.train([names], out_dir=tmp_path / "tuned", init_from=str(source), records="lines", max_steps=2)
