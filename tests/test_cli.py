"""The ``charlstm`` command end to end in temporary folders: train, generate, eval, info, presets,
and every kind of bad input with its one-line message and exit code."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import Result

from _runs import invoke, write_text
from charlstm.analysis.evaluate import score_run
from charlstm.config.corpus import CorpusConfig
from charlstm.data.sources import load_text
from charlstm.generation.generators import generate_text
from charlstm.runs.checkpoint import read_meta
from charlstm.runs.folder import LAST
from charlstm.runs.loading import load_model
from charlstm.runs.lock import LOCK_FILE
from charlstm.runs.metrics import read_metrics

TINY = ["--hidden-size", "16", "--num-layers", "1", "--embedding-size", "8", "--seq-len", "16",
        "--batch-size", "4", "--no-progress"]
TRAIN = ["--max-steps", "6", "--eval-every", "3", *TINY]
TUTORIAL = ["--preset", "tutorial", "--hidden-size", "8", "--seq-len", "10", "--batch-size", "16",
            "--epochs", "2", "--no-progress"]
BEST = re.compile(r"best-01-0000(03|06)-\d+\.\d{4}\.safetensors")
KERAS_NAME = re.compile(r"weights-improvement-(\d{2})-(\d+\.\d{4})\.safetensors")


def assert_error(result: Result, exit_code: int, *fragments: str, hint: str | None = None) -> str:
    """Exit ``exit_code`` with exactly one ``charlstm: error:`` line holding ``fragments``.

    With ``hint``, the line under it is ``charlstm: hint:`` holding ``hint``.
    """
    assert result.exit_code == exit_code, result.output
    stderr = result.stderr.splitlines()
    lines = [i for i, line in enumerate(stderr) if line.startswith("charlstm: error: ")]
    assert len(lines) == 1, result.stderr
    line = stderr[lines[0]]
    for fragment in fragments:
        assert fragment in line
    if hint is not None:
        below = stderr[lines[0] + 1] if lines[0] + 1 < len(stderr) else ""
        assert below.startswith("charlstm: hint: ") and hint in below, result.stderr
    assert result.stdout == ""
    return line


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file's bytes, but the lock's: it names whoever last held the folder."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != LOCK_FILE}


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory) -> SimpleNamespace:
    """One default-preset run trained through the CLI, shared read-only by the tests below."""
    root = tmp_path_factory.mktemp("cli")
    text = write_text(root / "text.txt")
    run = root / "run"
    result = invoke("train", text, "--out", run, *TRAIN)
    assert result.exit_code == 0, result.output
    return SimpleNamespace(root=root, text=text, run=run, result=result)


@pytest.fixture(scope="module")
def tutorial_run(tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("cli-tutorial")
    text = write_text(root / "short.txt", words=60)
    run = root / "run"
    result = invoke("train", text, "--out", run, *TUTORIAL)
    assert result.exit_code == 0, result.output
    return SimpleNamespace(root=root, text=text, run=run, result=result)


@pytest.fixture
def run_copy(cli_run, tmp_path) -> Path:
    """A private copy of the shared run, for tests that change or break it."""
    return Path(shutil.copytree(cli_run.run, tmp_path / "run"))


def continuation(stdout: str, prompt: str) -> str:
    """The generated characters of a single-sample ``generate``: after the prompt, before the newline."""
    assert stdout.startswith(prompt) and stdout.endswith("\n")
    return stdout[len(prompt) : -1]


# ---- train -----------------------------------------------------------------------------------


def test_train_writes_config_metrics_last_and_best(cli_run):
    run = cli_run.run
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    assert config["preset"] == "auto"
    assert config["model"]["hidden_size"] == 16 and config["model"]["embedding_size"] == 8
    assert config["train"]["seq_len"] == 16 and config["train"]["max_steps"] == 6
    metrics = read_metrics(run)
    assert [m["step"] for m in metrics] == [3, 6]
    assert all(math.isfinite(m["val_loss"]) for m in metrics)
    assert read_meta(run / LAST).progress.step == 6
    best = [p.name for p in run.glob("best-*.safetensors")]
    assert best and all(BEST.fullmatch(name) for name in best)
    assert "trained 6 steps" in cli_run.result.stderr


def test_resume_continues_to_the_new_step_limit(run_copy):
    result = invoke("train", "--resume", run_copy, "--max-steps", "10", "--no-progress")
    assert result.exit_code == 0, result.output
    assert read_meta(run_copy / LAST).progress.step == 10
    assert [m["step"] for m in read_metrics(run_copy)] == [3, 6, 9, 10]
    assert "trained 10 steps" in result.stderr


def test_presets_lists_every_preset():
    result = invoke("presets")
    assert result.exit_code == 0
    names = [line.split(":")[0] for line in result.stdout.splitlines() if not line.startswith(" ")]
    assert names == ["auto", "default", "tutorial", "tutorial-large"]


# ---- generate ----------------------------------------------------------------------------------


def test_generate_prints_the_prompt_and_exactly_length_characters(cli_run):
    result = invoke("generate", cli_run.run, "--prompt", "the ", "--length", "50", "--seed", "1")
    assert result.exit_code == 0, result.output
    generated = continuation(result.stdout, "the ")
    assert len(generated) == 50
    assert set(generated) <= set(load_model(cli_run.run).vocab.chars)


def test_generate_seed_makes_it_reproducible(cli_run):
    args = ("generate", cli_run.run, "--prompt", "the ", "--length", "60")
    first = invoke(*args, "--seed", "5").stdout
    assert invoke(*args, "--seed", "5").stdout == first
    assert invoke(*args, "--seed", "6").stdout != first


def test_generate_greedy_is_deterministic_and_matches_the_library(cli_run):
    first = invoke("generate", cli_run.run, "--greedy", "--length", "40")
    second = invoke("generate", cli_run.run, "--greedy", "--length", "40")
    assert first.exit_code == 0 and first.stdout == second.stdout
    # No prompt: a stream model starts as at a paragraph break.
    expected = generate_text(load_model(cli_run.run), None, length=40, greedy=True)[0]
    assert first.stdout == "\n" + expected + "\n"


def test_generate_num_samples(cli_run):
    result = invoke("generate", cli_run.run, "--prompt", "the ", "--length", "30", "--num-samples", "3",
                    "--seed", "2")
    assert result.exit_code == 0, result.output
    parts = re.split(r"--- sample (\d+) ---\n", result.stdout)
    assert parts[0] == ""
    assert parts[1::2] == ["1", "2", "3"]
    bodies = parts[2::2]
    assert all(body.startswith("the ") and len(body) == len("the ") + 30 + 1 for body in bodies)
    assert len(set(bodies)) == 3


def test_generate_unknown_prompt_characters_are_listed(cli_run):
    result = invoke("generate", cli_run.run, "--prompt", "the ☃ fox €", "--length", "10")
    line = assert_error(result, 3, "2 character(s)", "'☃'", "'€'", hint="--unknown drop")
    assert "'f'" not in line


def test_generate_unknown_drop_continues_the_cleaned_prompt(cli_run):
    args = ("generate", cli_run.run, "--length", "40", "--seed", "3")
    dropped = invoke(*args, "--prompt", "the ☃fox", "--unknown", "drop")
    assert dropped.exit_code == 0, dropped.output
    clean = invoke(*args, "--prompt", "the fox")
    # The prompt is printed as the model read it: the unknown character dropped.
    assert dropped.stdout == clean.stdout
    assert continuation(dropped.stdout, "the fox")


# ---- eval and info -------------------------------------------------------------------------------


def test_eval_prints_loss_bits_and_perplexity(cli_run):
    result = invoke("eval", cli_run.run)
    assert result.exit_code == 0, result.output
    match = re.fullmatch(
        r"loss (\S+) nats/char, (\S+) bits/char, perplexity (\S+) over (\d+) characters\n", result.stdout
    )
    assert match, result.stdout
    loss, bits, perplexity = (float(g) for g in match.groups()[:3])
    assert bits == pytest.approx(loss / math.log(2), abs=1e-3)
    assert perplexity == pytest.approx(math.exp(loss), rel=1e-3)
    as_json = json.loads(invoke("eval", cli_run.run, "--json").stdout)
    assert as_json == pytest.approx(score_run(cli_run.run).as_dict())
    assert as_json["characters"] == int(match.group(4))
    assert as_json["loss"] == pytest.approx(loss, abs=1e-4)


def test_eval_on_a_given_text(cli_run, tmp_path):
    other = write_text(tmp_path / "other.txt", words=200, seed=0)
    result = invoke("eval", cli_run.run, other, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == pytest.approx(score_run(cli_run.run, [other]).as_dict())


def test_eval_unknown_characters_follow_the_policy_flags(cli_run, tmp_path):
    other = tmp_path / "snow.txt"
    other.write_text("the fox \u2603 and the dog\n" * 20, encoding="utf-8")
    assert_error(invoke("eval", cli_run.run, other), 3, "'\u2603'", hint="--unknown drop")
    dropped = invoke("eval", cli_run.run, other, "--unknown", "drop", "--json")
    assert dropped.exit_code == 0, dropped.output
    assert json.loads(dropped.stdout)["characters"] < len(other.read_text(encoding="utf-8"))


def test_info_shows_vocab_size_and_parameters(cli_run):
    result = invoke("info", cli_run.run)
    assert result.exit_code == 0, result.output
    vocab = len(set(load_text([cli_run.text], CorpusConfig())))
    embedding, hidden = 8, 16
    # Embedding, one LSTM layer (PyTorch's two bias vectors), linear head.
    parameters = vocab * embedding + 4 * hidden * (embedding + hidden) + 8 * hidden + hidden * vocab + vocab
    assert f"vocab_size: {vocab}\n" in result.stdout
    assert f"parameters: {parameters}\n" in result.stdout
    facts = json.loads(invoke("info", cli_run.run, "--json").stdout)
    assert (facts["vocab_size"], facts["parameters"]) == (vocab, parameters)
    assert facts["best_val"]["step"] in (3, 6)


# ---- the tutorial preset --------------------------------------------------------------------------


def test_tutorial_preset_writes_keras_style_checkpoint_names(tutorial_run):
    names = sorted(p.name for p in tutorial_run.run.glob("weights-improvement-*"))
    assert names, sorted(p.name for p in tutorial_run.run.iterdir())
    assert all(KERAS_NAME.fullmatch(name) for name in names)
    assert KERAS_NAME.fullmatch(names[0]).group(1) == "01"  # the first epoch always improves on nothing
    for name in names:
        meta = read_meta(tutorial_run.run / name)
        assert meta.metric.name == "train_loss"
        assert f"{meta.metric.value:.4f}" == KERAS_NAME.fullmatch(name).group(2)
    assert read_meta(tutorial_run.run / LAST).progress.epoch == 2


def test_tutorial_generate_seeds_with_a_training_window(tutorial_run):
    result = invoke("generate", tutorial_run.run, "--greedy", "--length", "20")
    assert result.exit_code == 0, result.output
    match = re.search(r'Seed:\n"(.*)"\n', result.stderr, re.S)
    assert match, result.stderr
    seed_window = match.group(1)
    assert len(seed_window) == 10  # --seq-len 10
    training_text = load_text([tutorial_run.text], CorpusConfig(lowercase=True))
    assert seed_window in training_text
    assert len(continuation(result.stdout, seed_window)) == 20


def test_eval_on_a_run_without_a_val_split(tutorial_run):
    assert_error(invoke("eval", tutorial_run.run), 3, "no val split", hint="charlstm eval RUN TEXT")


# ---- bad input -----------------------------------------------------------------------------------


def _train_new(tmp_path: Path, source: Path, *extra: str) -> tuple[Result, Path]:
    out = tmp_path / "new-run"
    return invoke("train", source, "--out", out, *TRAIN, *extra), out


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (b"", ("empty",)),
        (b"\n\n\r\n", ("empty",)),
        (b"PK\x03\x04\x00\x00binary\x00stuff", ("binary",)),
        (b"hello there\n", ("too short", "--batch-size")),
        (b"good text \xff\xfe more text", ("not valid utf-8", "byte offset 10", "--encoding")),
    ],
    ids=["empty", "blank-lines", "binary", "too-short", "undecodable"],
)
def test_train_refuses_unusable_text(tmp_path, content, fragments):
    source = tmp_path / "input.txt"
    source.write_bytes(content)
    result, out = _train_new(tmp_path, source)
    assert_error(result, 3, *fragments)
    assert not out.exists()  # no half-made run left behind


def test_train_missing_text_file(tmp_path):
    result, out = _train_new(tmp_path, tmp_path / "nowhere.txt")
    assert_error(result, 3, "nowhere.txt", "no such file")
    assert not out.exists()


def test_train_unknown_preset(cli_run, tmp_path):
    result, _ = _train_new(tmp_path, cli_run.text, "--preset", "nope")
    assert_error(result, 2, "unknown preset 'nope'", "tutorial-large")


@pytest.mark.parametrize(("budget", "fragment"), [("soon", "cannot read duration"), ("5x", "cannot read"),
                                                  ("0", "positive")])
def test_train_bad_time_budget(cli_run, tmp_path, budget, fragment):
    result, out = _train_new(tmp_path, cli_run.text, "--time-budget", budget)
    assert_error(result, 2, fragment)
    assert not out.exists()


def test_train_needs_out_and_resume_takes_none(cli_run, tmp_path):
    assert_error(invoke("train", cli_run.text, *TRAIN), 2, "--out")
    assert_error(invoke("train", "--resume", cli_run.run, "--out", tmp_path / "x"), 2, "--resume takes no")


def test_train_refuses_to_overwrite_an_existing_run(cli_run, run_copy):
    before = snapshot(run_copy)
    result = invoke("train", cli_run.text, "--out", run_copy, *TRAIN)
    assert_error(result, 4, "already holds a run", hint=f"--resume {run_copy}")
    assert snapshot(run_copy) == before


def test_train_out_pointing_at_a_file(cli_run, tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("keep me", encoding="utf-8")
    result = invoke("train", cli_run.text, "--out", target, *TRAIN)
    assert result.exit_code in (2, 4)
    assert_error(result, result.exit_code, str(target))
    assert target.read_text(encoding="utf-8") == "keep me"


@pytest.mark.parametrize("value", ["-5", "lots"])
def test_train_refuses_a_bad_eval_max_chars(cli_run, tmp_path, value):
    result, out = _train_new(tmp_path, cli_run.text, "--eval-max-chars", value)
    line = assert_error(result, 2)
    assert "number of characters" in line or re.search(r"eval[_-]max[_-]chars", line)
    assert not out.exists()


def test_resume_may_not_change_the_recipe(run_copy):
    before = snapshot(run_copy)
    result = invoke("train", "--resume", run_copy, "--hidden-size", "32", "--no-progress")
    assert_error(result, 2, "cannot change hidden_size")
    assert snapshot(run_copy) == before


def test_resume_may_not_change_settings_that_only_have_flags_now(run_copy):
    result = invoke("train", "--resume", run_copy, "--beta2", "0.9", "--no-progress")
    assert_error(result, 2, "cannot change beta2")


@pytest.mark.parametrize("case", ["missing", "empty-folder", "corrupted-last"])
def test_resume_without_a_usable_run(run_copy, tmp_path, case):
    target = {"missing": tmp_path / "nothing", "empty-folder": tmp_path / "empty",
              "corrupted-last": run_copy}[case]
    if case == "empty-folder":
        target.mkdir()
    if case == "corrupted-last":
        last = run_copy / LAST
        last.write_bytes(last.read_bytes()[:200])
    assert_error(invoke("train", "--resume", target, "--no-progress"), 4, str(target))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_generate_on_a_corrupted_checkpoint(run_copy, damage):
    best = sorted(run_copy.glob("best-*.safetensors"))
    data = best[0].read_bytes()
    for path in best:
        path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x93NUMPY" * 40,
                          "empty": b""}[damage])
    # The folder falls back past its damaged best checkpoints (to last), saying so; the file itself fails.
    from_folder = invoke("generate", run_copy, "--prompt", "the ", "--length", "5")
    assert from_folder.exit_code == 0
    assert "skipping" in from_folder.output and "corrupted" in from_folder.output
    assert_error(invoke("generate", best[0], "--prompt", "the ", "--length", "5"), 4, best[0].name)


def test_generate_on_a_folder_without_a_run(tmp_path):
    assert_error(invoke("generate", tmp_path / "absent", "--length", "5"), 4, "no such run folder")
    assert_error(invoke("generate", tmp_path, "--length", "5"), 4, "holds no checkpoint")


@pytest.mark.parametrize(("option", "value", "fragment"), [("--temperature", "0", "temperature"),
                                                           ("--top-p", "1.5", "top_p"),
                                                           ("--top-k", "0", "top_k"),
                                                           ("--num-samples", "0", "num_samples")])
def test_generate_bad_sampling_settings(cli_run, option, value, fragment):
    assert_error(invoke("generate", cli_run.run, option, value), 2, fragment)


def test_eval_bad_split(cli_run):
    assert_error(invoke("eval", cli_run.run, "--split", "train"), 2, "val or test")


# ---- the installed entry points -------------------------------------------------------------------


def _python_m(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "charlstm", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def test_python_m_charlstm_help():
    done = _python_m("--help")
    assert done.returncode == 0, done.stderr
    for command in ("train", "generate", "eval", "info", "presets"):
        assert command in done.stdout


def test_python_m_charlstm_error_is_one_line_without_traceback(tmp_path):
    done = _python_m("generate", str(tmp_path / "absent"))
    assert done.returncode == 4
    assert done.stdout == ""
    assert done.stderr.startswith("charlstm: error: ") and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr
