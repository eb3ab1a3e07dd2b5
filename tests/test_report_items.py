"""The report of a model of a list: items at each temperature in makemore's three groups, by label."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from _runs import TINY_MODEL
from charlstm.analysis.novelty import item_novelty, list_items
from charlstm.analysis.report import build_report
from charlstm.analysis.report_items import GROUP_NAMES, ITEMS_PER_TEMPERATURE, draw_item_samples
from charlstm.config.sample import SampleConfig
from charlstm.errors import CorpusError
from charlstm.generation.items import generate_items, training_items
from charlstm.generation.sampling import SAMPLE_TEMPERATURES
from charlstm.runs.loading import load_model
from charlstm.training import session as api

NAMES = [f"{a}{b}{c}saurus" for a in "bcdfgk" for b in "aeiou" for c in "lmnr"]  # 120 names
SETTINGS = {**TINY_MODEL, "batch_size": 8, "max_steps": 30, "eval_every": 15, "lr": 1e-2,
            "progress_bar": False}
# "<count> <group name> (<share>)", as each temperature (and label) lists its items.
GROUP_LINE = re.compile(r"<p class='group'>(\d+) (in the training list|held-out items \(real, never seen in "
                        r"training\)|new) \((\d+\.\d)%\)</p>")


def size(name: str) -> str:
    return "big" if name[0] in "bcd" else "small"


@pytest.fixture(scope="module")
def names_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("items-report")
    (root / "names.txt").write_text("\n".join(sorted(NAMES)) + "\n", encoding="utf-8")
    api.train([root / "names.txt"], out_dir=root / "run", records="lines", **SETTINGS)
    return root / "run"


@pytest.fixture(scope="module")
def labelled_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("labelled-report")
    rows = [f"{name},{size(name)}" for name in NAMES]
    (root / "names.csv").write_text("name,size\n" + "\n".join(rows) + "\n", encoding="utf-8")
    api.train([root / "names.csv"], out_dir=root / "run", records="csv", text_column="name",
              label_column="size", **SETTINGS)
    return root / "run"


def group_lines(html: str) -> list[tuple[int, str, float]]:
    return [(int(count), name, float(share)) for count, name, share in GROUP_LINE.findall(html)]


def assert_groups_add_up(lines: list[tuple[int, str, float]], items: int) -> None:
    assert [name for _, name, _ in lines] == list(GROUP_NAMES.values())
    assert sum(count for count, _, _ in lines) == items
    assert sum(share for _, _, share in lines) == pytest.approx(100.0, abs=0.2)  # each rounded to 0.1


def test_the_list_is_read_from_every_split_of_the_run(names_run, labelled_run):
    loaded = load_model(names_run)
    known = list_items(loaded)
    assert known.train == training_items(loaded)
    assert known.held_out and not known.held_out & known.train
    assert known.train | known.held_out == set(NAMES)  # every item is in one split or another
    assert known.labels == () and known.decided == {}
    labelled = list_items(load_model(labelled_run))
    assert labelled.labels == ("big", "small")
    assert labelled.decided == {name: size(name) for name in NAMES}


def test_item_novelty_reads_the_list_itself_when_given_the_model(names_run):
    loaded = load_model(names_run)
    draw = generate_items(loaded, 20, SampleConfig(seed=3))
    figures = item_novelty(loaded, draw)
    assert figures == item_novelty(list_items(loaded), draw)
    assert figures["items"] == 20 and sum(figures["counts"].values()) == 20
    assert figures["counts"]["new"] == draw.new  # generate_items's own count of new items agrees


def test_a_list_report_shows_items_in_three_groups_at_each_temperature(names_run):
    page = build_report(names_run, seed=2).read_text(encoding="utf-8")
    sections = page.split("<h3>temperature ")[1:]
    assert [s[:3] for s in sections] == [f"{t:.1f}" for t in SAMPLE_TEMPERATURES]
    for section in sections:
        assert_groups_add_up(group_lines(section), ITEMS_PER_TEMPERATURE)
        assert section.count("<li>") == ITEMS_PER_TEMPERATURE
    # The summary table: temperature, items, three shares, cut.
    share = r"<td class='num'>([\d.]+)%</td>"
    rows = re.findall(r"<tr><td class='num'>(\d\.\d)</td><td class='num'>(\d+)</td>" + share * 3
                      + r"<td class='num'>(\d+)</td></tr>", page)
    assert [row[0] for row in rows] == [f"{t:.1f}" for t in SAMPLE_TEMPERATURES]
    for row in rows:
        assert int(row[1]) == ITEMS_PER_TEMPERATURE
        assert sum(float(share) for share in row[2:5]) == pytest.approx(100.0, abs=0.2)
    assert "training list</th><td>" in page and "items (train split)" in page
    # The long-text measures are a running text's: not shown for a list.
    assert "Longest copy" not in page and "10-grams copied" not in page and "real words" not in page


def test_the_report_draws_as_many_items_as_asked_from_a_prefix(names_run):
    page = build_report(names_run, names_run / "few.html", items=6, prompt="ba").read_text(encoding="utf-8")
    items = re.findall(r"<li>([^<]*)</li>", page)
    assert len(items) == 6 * len(SAMPLE_TEMPERATURES) and all(item.startswith("ba") for item in items)


def test_a_labelled_report_shows_each_labels_items_and_how_often_its_label_is_kept(labelled_run):
    page = build_report(labelled_run, items=10, seed=4).read_text(encoding="utf-8")
    assert "labels big, small" in page and "label kept" in page
    for section in page.split("<h3>temperature ")[1:]:
        by_label = section.split("<h4>label ")[1:]
        assert [part.split("</h4>")[0] for part in by_label] == ["big", "small"]
        for part in by_label:
            assert_groups_add_up(group_lines(part), 5)  # 10 items, labels in turn
    by_label_rows = re.findall(r"<tr><td class='num'>(\d\.\d)</td><td class='num'>(big|small)</td>"
                               r"<td class='num'>5</td>", page)
    assert len(by_label_rows) == 2 * len(SAMPLE_TEMPERATURES)
    kept = re.findall(r"<td class='num'>(?:\d+\.\d%|n/a) of \d+</td>", page)
    assert len(kept) == 3 * len(SAMPLE_TEMPERATURES)  # all labels, then each label


def test_labels_in_turn_round_the_count_up_so_each_label_gets_as_many(labelled_run):
    loaded = load_model(labelled_run)
    known = list_items(loaded)
    [first, *_] = draw_item_samples(loaded, known, count=5, seed=1)
    assert first.figures["items"] == 6
    assert {label: f["items"] for label, f in first.figures["labels"].items()} == {"big": 3, "small": 3}
    decided = first.figures["decided"]
    assert decided == sum(item.text in known.decided for item in first.items)
    assert first.figures["label_match"] == sum(known.decided.get(item.text) == item.label
                                               for item in first.items)


def test_the_list_needs_the_run_folder(names_run, tmp_path):
    lone = tmp_path / "lone.safetensors"
    shutil.copy(names_run / "last.safetensors", lone)
    with pytest.raises(CorpusError, match="not in its run folder"):
        list_items(load_model(lone))
