"""analysis/score.py and ``charlstm score``: per file, line and item; alternatives; --sort; --classify."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from _runs import TINY_MODEL, invoke, train_stream_run, write_text
from charlstm.analysis.score import (
    classify_records,
    confusion,
    read_items,
    score_files,
    score_records,
    score_text,
)
from charlstm.data.records import Record
from charlstm.data.sources import load_text
from charlstm.errors import ConfigError, CorpusError, UnknownCharactersError
from charlstm.framing.items import evaluate_items
from charlstm.framing.stream import evaluate_stream
from charlstm.generation.items import score_items
from charlstm.runs.loading import load_model
from charlstm.training import session as api

NAMES = [f"{a}{b}{c}saurus" for a in "bcdfgk" for b in "aeiou" for c in "lmnr"]  # 120 names
ODD = "ssssssssssssssssssss"  # known characters in an order no name has
SETTINGS = {**TINY_MODEL, "batch_size": 8, "max_steps": 40, "eval_every": 20, "lr": 1e-2}
CPU = torch.device("cpu")


def _size(name: str) -> str:
    return "big" if name[0] in "bcd" else "small"


@pytest.fixture(scope="module")
def text_run(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A stream run, its training text (some 3,600 characters) and a short other text."""
    root = tmp_path_factory.mktemp("text")
    trained = write_text(root / "t.txt")
    other = write_text(root / "other.txt", words=120, seed=3)  # under 1,024 characters: eval reads one row
    return train_stream_run(root / "run", trained), trained, other


@pytest.fixture(scope="module")
def names_run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("names")
    (root / "names.txt").write_text("\n".join(sorted(NAMES)) + "\n", encoding="utf-8")
    api.train([root / "names.txt"], out_dir=root / "run", records="lines", **SETTINGS)
    (root / "odd.txt").write_text("\n".join([*NAMES[::10], ODD]) + "\n", encoding="utf-8")
    return root / "run", root / "odd.txt"


@pytest.fixture(scope="module")
def labelled_run(tmp_path_factory) -> tuple[Path, Path]:
    """Names labelled by their first letter (b, c, d: big), trained until the label shows."""
    root = tmp_path_factory.mktemp("labelled")
    rows = [f"{name},{_size(name)}" for name in NAMES]
    (root / "names.csv").write_text("name,size\n" + "\n".join(rows) + "\n", encoding="utf-8")
    api.train([root / "names.csv"], out_dir=root / "run", records="csv", text_column="name",
              label_column="size", **{**SETTINGS, "max_steps": 300, "eval_every": 100})
    return root / "run", root / "names.csv"


def _logp(model, ids: np.ndarray) -> torch.Tensor:
    """The naive path: one forward call over the whole text, (T - 1, V) log-probabilities."""
    with torch.no_grad():
        logits, _ = model(torch.from_numpy(ids[None, :-1]))
    return logits[0].log_softmax(-1)


# ---- running text ------------------------------------------------------------------------------


def test_a_files_total_is_evals_loss_times_its_characters(text_run):
    run, trained, other = text_run
    loaded = load_model(run)
    for path in (trained, other):  # the long one crosses several chunks of the stream
        [whole] = score_files(loaded, [path])
        ids = loaded.vocab.encode(load_text([path], loaded.meta.corpus_config))
        result = evaluate_stream(loaded.model, ids, device=CPU, rows=1)
        assert whole.chars == result.characters == len(ids) - 1 and whole.where == str(path)
        assert whole.logprob == pytest.approx(-result.loss * result.characters, rel=1e-5)
        assert whole.bits_per_char == pytest.approx(result.bits_per_char, rel=1e-5)
    evaluated = invoke("eval", run, other, "--json")
    scored = invoke("score", run, other, "--json")
    assert evaluated.exit_code == 0 and scored.exit_code == 0, scored.output
    record = json.loads(scored.stdout)
    assert record["mean_logprob"] == pytest.approx(-json.loads(evaluated.stdout)["loss"], rel=1e-5)
    assert set(record) == {"where", "chars", "logprob", "mean_logprob", "bits_per_char"}


def test_lines_are_read_in_the_files_stream_and_add_up_to_it(text_run):
    run, trained, _ = text_run
    loaded = load_model(run)
    text = load_text([trained], loaded.meta.corpus_config)
    lines = score_files(loaded, [trained], per="line")
    [whole] = score_files(loaded, [trained])
    assert [s.text for s in lines] == text.split("\n") and lines[1].where == f"{trained}:line 2"
    assert sum(s.chars for s in lines) == whole.chars
    assert sum(s.logprob for s in lines) == pytest.approx(whole.logprob, rel=1e-6)
    assert lines[0].chars == len(lines[0].text)  # the text's first character is predicted by none
    assert all(s.chars == len(s.text) + 1 for s in lines[1:-1])  # each line and its newline
    # State carried across lines: line 3 as one forward call over the whole text scores it.
    logp = _logp(loaded.model, ids := loaded.vocab.encode(text))
    start = len(lines[0].text) + len(lines[1].text) + 2  # line 3's first character
    picked = logp[start - 1 : start - 1 + lines[2].chars].gather(-1, torch.from_numpy(
        ids[start : start + lines[2].chars])[:, None])
    assert lines[2].logprob == pytest.approx(picked.sum().item(), rel=1e-4)
    result = invoke("score", run, trained, "--per", "line")
    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()
    assert len(rows) == len(lines) + 1 and rows[0].split()[:4] == ["chars", "logprob", "mean", "bits/char"]
    assert f"{trained}:line 1  {lines[0].text}" in rows[1]


def test_a_string_is_cleaned_as_a_prompt_and_needs_two_characters(text_run):
    loaded = load_model(text_run[0])
    [crlf] = score_text(loaded, "the fox\r\nthe dog")
    [lf] = score_text(loaded, "the fox\nthe dog")
    assert crlf.chars == lf.chars == 14 and crlf.logprob == pytest.approx(lf.logprob)
    with pytest.raises(CorpusError, match="at least 2 characters"):
        score_text(loaded, "t")


def test_top_k_are_the_k_most_likely_and_rank_places_the_actual_character(text_run):
    run, _, other = text_run
    result = invoke("score", run, other, "--top", "3")
    assert result.exit_code == 0, result.output
    positions = json.loads(result.stdout)["positions"]
    loaded = load_model(run)
    chars = loaded.vocab.chars
    ids = loaded.vocab.encode(load_text([other], loaded.meta.corpus_config))
    logp = _logp(loaded.model, ids)
    assert len(positions) == len(ids) - 1
    for at, row, target in zip(positions, logp, ids[1:].tolist(), strict=True):
        best = row.topk(3)
        assert [lp for _, lp in at["top"]] == pytest.approx(best.values.tolist(), abs=1e-4)
        assert [row[chars.index(c)].item() for c, _ in at["top"]] == pytest.approx(best.values.tolist(),
                                                                                   abs=1e-4)
        assert at["char"] == chars[target] and at["logprob"] == pytest.approx(row[target].item(), abs=1e-4)
        assert at["rank"] == 1 + int((row > row[target] + 1e-5).sum())
        if at["rank"] <= 3:
            assert at["top"][at["rank"] - 1][0] == at["char"]
    assert {at["rank"] == 1 for at in positions} == {True, False}


def test_sort_lists_the_least_likely_lines_first(text_run):
    run, trained, _ = text_run
    result = invoke("score", run, trained, "--per", "line", "--json", "--sort")
    means = [json.loads(line)["mean_logprob"] for line in result.stdout.splitlines()]
    assert means == sorted(means) and len(means) > 10


# ---- lists of items ----------------------------------------------------------------------------


def test_each_items_score_is_score_items_and_the_mean_counts_the_end(names_run):
    run, odd = names_run
    loaded = load_model(run)
    scores = score_files(loaded, [odd])
    assert [s.text for s in scores] == [*NAMES[::10], ODD] and scores[0].where == f"{odd}:line 1"
    expected = score_items(loaded, [(None, s.text) for s in scores])
    assert [s.logprob for s in scores] == pytest.approx(expected, rel=1e-6)
    assert all(s.chars == len(s.text) + 1 for s in scores)
    ids = np.concatenate([np.append(loaded.vocab.encode("\x02" + s.text), 1) for s in scores])
    result = evaluate_items(loaded.model, ids, device=CPU)
    mean = sum(s.logprob for s in scores) / sum(s.chars for s in scores)
    assert mean == pytest.approx(-result.loss, rel=1e-5)
    with_top = score_records(loaded, [Record(s.text, None, s.where) for s in scores], top=2)
    for one, plain in zip(with_top, scores, strict=True):
        assert one.positions.logprobs.sum() == pytest.approx(plain.logprob, rel=1e-5)
        assert one.positions.targets[-1] == 1 and one.positions.top_ids.shape == (one.chars, 2)


def test_sort_puts_the_odd_item_first_and_json_has_its_fields(names_run):
    run, odd = names_run
    result = invoke("score", run, odd, "--sort", "--json")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records[0]["text"] == ODD and len(records) == 13
    assert [r["mean_logprob"] for r in records] == sorted(r["mean_logprob"] for r in records)
    table = invoke("score", run, odd, "--sort")
    assert table.stdout.splitlines()[1].endswith(f"{odd}:line 13  {ODD}")


def test_classify_picks_the_label_by_bayes_rule_and_beats_chance(labelled_run):
    run, names = labelled_run
    loaded = load_model(run)
    info = loaded.meta.items
    found = classify_records(loaded, read_items(loaded, [names]))
    table = confusion(found, info.labels)
    assert table.labels == ["big", "small"] and table.counts.sum() == len(NAMES)
    assert table.accuracy > 0.75  # chance: 0.5
    one = found[0]
    joint = np.array(score_items(loaded, [(label, one.text) for label in info.labels]))
    joint += np.log(np.array(info.label_counts) / sum(info.label_counts))
    posterior = np.exp(joint - np.logaddexp.reduce(joint))
    assert [one.posteriors[label] for label in info.labels] == pytest.approx(posterior.tolist())
    assert one.predicted == info.labels[int(posterior.argmax())] and one.label == _size(one.text)


def test_classify_through_the_cli_prints_accuracy_and_a_confusion_table(labelled_run, tmp_path):
    run, names = labelled_run
    result = invoke("score", run, names, "--classify")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["predicted", "posterior", "label", "where", "text"]
    assert any(line.startswith("accuracy ") and "of 120 labelled items" in line for line in lines)
    corner = lines.index(next(line for line in lines if line.startswith("true \\ predicted")))
    assert lines[corner].split()[-2:] == ["big", "small"]
    assert [line.split()[0] for line in lines[corner + 1 :]] == ["big", "small"]
    as_json = invoke("score", run, names, "--classify", "--json", "--sort").stdout.splitlines()
    summary = json.loads(as_json[-1])
    assert summary["labels"] == ["big", "small"] and np.sum(summary["confusion"]) == 120
    posteriors = [json.loads(line)["posterior"] for line in as_json[:-1]]
    assert posteriors == sorted(posteriors)
    # New items without the label column: classified, no accuracy; scored over every label.
    unlabelled = tmp_path / "new.csv"
    unlabelled.write_text("name\nbalsaurus\nkirsaurus\n", encoding="utf-8")
    result = invoke("score", run, unlabelled, "--classify", "--no-labels")
    assert result.exit_code == 0, result.output
    assert "accuracy" not in result.stdout and len(result.stdout.splitlines()) == 3


def test_an_unlabelled_item_of_a_labelled_model_scores_its_marginal_likelihood(labelled_run):
    loaded = load_model(labelled_run[0])
    info = loaded.meta.items
    [score] = score_records(loaded, [Record("balsaurus", None, "x")])
    joint = np.array(score_items(loaded, [(label, "balsaurus") for label in info.labels]))
    joint += np.log(np.array(info.label_counts) / sum(info.label_counts))
    assert score.logprob == pytest.approx(np.logaddexp.reduce(joint), rel=1e-6)
    [given] = score_records(loaded, [Record("balsaurus", "big", "x")])
    assert given.logprob == pytest.approx(joint[0] - np.log(info.label_counts[0] / sum(info.label_counts)))


# ---- refusals ----------------------------------------------------------------------------------


def test_refusals_and_their_exit_codes(text_run, names_run, tmp_path):
    run, trained, _ = text_run
    items_run, odd = names_run
    strange = tmp_path / "strange.txt"
    strange.write_text("the fox \u2211 the dog\n", encoding="utf-8")
    cases = [
        ((run, trained, "--classify"), 2, "trained on running text"),
        ((run, trained, "--per", "item"), 2, "not per item"),
        ((run, trained, "--per", "word"), 2, "item, line or file"),
        ((items_run, odd, "--per", "line"), 2, "not per line"),
        ((items_run, odd, "--classify"), 2, "a list without labels"),
        ((run, trained, "--top", "11"), 2, "--top"),
        ((run, trained, "--top", "2", "--classify"), 2, "--top"),
        ((run, strange), 3, "'\u2211'"),
        ((run, tmp_path / "missing.txt"), 3, "missing.txt"),
        ((items_run, tmp_path / "missing.txt"), 3, "missing.txt"),
    ]
    for args, code, words in cases:
        result = invoke("score", *args)
        assert result.exit_code == code, (args, result.output)
        assert words in result.output, (args, result.output)
    assert invoke("score", run, strange, "--unknown", "drop").exit_code == 0
    zebra = tmp_path / "zebra.txt"
    zebra.write_text("balsaurus\nzebra\n", encoding="utf-8")
    result = invoke("score", items_run, zebra)
    assert result.exit_code == 3 and f"{zebra}:line 2" in result.output and "'z'" in result.output


def test_the_library_raises_what_the_cli_reports(text_run):
    loaded = load_model(text_run[0])
    with pytest.raises(UnknownCharactersError, match="here: 1 character"):
        score_text(loaded, "the fox \u2211", where="here")
    with pytest.raises(ConfigError, match="top must be"):
        score_text(loaded, "the fox", top=11)


def test_help_fits_80_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    result = invoke("score", "--help")
    assert result.exit_code == 0 and result.stdout.splitlines()[0].endswith(" score [OPTIONS] RUN FILE...")
    assert [line for line in result.stdout.splitlines() if len(line) > 80] == []
    for flag in ("--per", "--json", "--top", "--sort", "--classify", "--no-labels", "--unknown"):
        assert flag in result.stdout


def test_a_window_model_is_refused_it_reads_no_stream(tmp_path):
    from _runs import train_window_run

    text = write_text(tmp_path / "t.txt", words=100)
    run = train_window_run(tmp_path / "run", text)
    result = invoke("score", run, text)
    assert result.exit_code == 2 and "stream-framed" in result.output
