"""Loss, bits per char and perplexity: a uniform model, naive references, and scoring run folders."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from _runs import invoke, sample_text, tiny_model, train_stream_run, train_window_run, write_text
from charlstm.analysis.evaluate import score_run
from charlstm.data.prepared import open_prepared
from charlstm.data.sources import load_text
from charlstm.errors import ConfigError, CorpusError, UnknownCharactersError
from charlstm.framing import StreamFraming, WindowFraming
from charlstm.framing.stream import EVAL_ROWS, evaluate_stream
from charlstm.framing.window import evaluate_windows
from charlstm.model.loss import EvalResult
from charlstm.runs.folder import DATA_DIR
from charlstm.runs.loading import load_model

V = 13
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    """A stream run (10% held out) and a tutorial window run (nothing held out), trained once."""
    root = tmp_path_factory.mktemp("evaluate")
    train_stream_run(root / "stream", write_text(root / "text.txt"))
    train_window_run(root / "window", write_text(root / "short.txt", words=60))
    return root


def random_ids(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, V, size=n).astype(np.int64)


def uniform_model() -> torch.nn.Module:
    """Zero head weight and bias: logits are all zero, every character has probability 1/V."""
    model = tiny_model(V)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    return model


def nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-prediction negative log-likelihood in float64, computed independently of char_loss."""
    logp = logits.double().log_softmax(dim=-1)
    return -logp.gather(-1, targets[..., None]).squeeze(-1)


def manual_stream(model, ids: np.ndarray) -> tuple[float, int]:
    """The stream rule by hand: the text cut into ``rows`` contiguous rows, each read in ONE call
    from a zero state (evaluate_stream reads chunks and carries the state between them)."""
    predictions = len(ids) - 1
    rows = max(1, min(EVAL_ROWS, predictions // 512))
    row_len = predictions // rows
    n = rows * row_len
    x = torch.from_numpy(ids[:n]).view(rows, row_len)
    y = torch.from_numpy(ids[1 : n + 1]).view(rows, row_len)
    logits, _ = model(x)
    return nll(logits, y).mean().item(), n


def manual_windows(model, ids: np.ndarray, seq_len: int, starts: list[int]) -> float:
    """One window at a time from a zero state, scoring the id after it."""
    losses = []
    for s in starts:
        logits, _ = model(torch.from_numpy(ids[s : s + seq_len])[None])
        losses.append(nll(logits[:, -1], torch.tensor([ids[s + seq_len]])).item())
    return sum(losses) / len(losses)


# ---- the figures -----------------------------------------------------------------------------


def test_eval_result_figures_follow_the_loss():
    result = EvalResult(loss=math.log(4.0), characters=10)
    assert result.bits_per_char == pytest.approx(2.0)
    assert result.perplexity == pytest.approx(4.0)
    as_dict = result.as_dict()
    assert as_dict == {"loss": result.loss, "characters": 10, "bits_per_char": result.bits_per_char,
                       "perplexity": result.perplexity}


def test_uniform_model_scores_log2_v_bits_with_the_stream_reader():
    ids = random_ids(1500)
    result = evaluate_stream(uniform_model(), ids, device=CPU)
    assert result.loss == pytest.approx(math.log(V), rel=1e-6)
    assert result.bits_per_char == pytest.approx(math.log2(V), rel=1e-6)
    assert result.perplexity == pytest.approx(V, rel=1e-6)
    # Every row boundary costs at most one prediction; no more than the text holds.
    assert len(ids) - 1 - EVAL_ROWS < result.characters <= len(ids) - 1


def test_uniform_model_scores_log2_v_bits_with_the_window_reader():
    ids = random_ids(300)
    result = evaluate_windows(uniform_model(), ids, seq_len=12, device=CPU, batch_size=64)
    assert result.bits_per_char == pytest.approx(math.log2(V), rel=1e-6)
    assert result.perplexity == pytest.approx(V, rel=1e-6)
    assert result.characters == len(ids) - 12


# ---- against naive references ------------------------------------------------------------------


@pytest.mark.parametrize("length", [200, 1300])  # one row; several rows read in chunks of 256
def test_evaluate_stream_equals_reading_each_row_in_one_call(length):
    model = tiny_model(V)
    ids = random_ids(length, seed=1)
    result = evaluate_stream(model, ids, device=CPU)
    loss, n = manual_stream(model, ids)
    assert result.characters == n
    assert result.loss == pytest.approx(loss, rel=1e-5)


def test_evaluate_stream_of_a_short_text_scores_every_prediction():
    ids = random_ids(100, seed=2)
    assert evaluate_stream(tiny_model(V), ids, device=CPU).characters == 99


def test_evaluate_windows_equals_one_window_at_a_time():
    model = tiny_model(V)
    ids = random_ids(60, seed=3)
    seq_len = 8
    result = evaluate_windows(model, ids, seq_len=seq_len, device=CPU, batch_size=7)  # ragged batches
    assert result.characters == len(ids) - seq_len
    expected = manual_windows(model, ids, seq_len, list(range(len(ids) - seq_len)))
    assert result.loss == pytest.approx(expected, rel=1e-5)


def test_evaluation_runs_in_eval_mode_and_restores_training_mode():
    model = tiny_model(V)  # dropout 0.3: train mode would make scores random
    ids = random_ids(700, seed=4)
    reference = evaluate_stream(model, ids, device=CPU)
    reference_windows = evaluate_windows(model, ids[:100], seq_len=8, device=CPU)
    model.train()
    assert evaluate_stream(model, ids, device=CPU) == reference
    assert evaluate_windows(model, ids[:100], seq_len=8, device=CPU) == reference_windows
    assert model.training


# ---- limits and errors -----------------------------------------------------------------------


def test_max_chars_limits_the_stream_count():
    model = tiny_model(V)
    ids = random_ids(1500, seed=5)
    limited = evaluate_stream(model, ids, device=CPU, max_chars=100)
    assert limited.characters == 100
    assert limited == evaluate_stream(model, ids[:101], device=CPU)
    everything = evaluate_stream(model, ids, device=CPU)
    assert evaluate_stream(model, ids, device=CPU, max_chars=10_000) == everything


def test_max_windows_scores_an_evenly_spaced_subset():
    model = tiny_model(V)
    seq_len = 8
    ids = random_ids(49, seed=6)  # 41 windows: 5 evenly spaced ones start at 0, 10, 20, 30, 40
    limited = evaluate_windows(model, ids, seq_len=seq_len, device=CPU, max_windows=5)
    assert limited.characters == 5
    assert limited.loss == pytest.approx(manual_windows(model, ids, seq_len, [0, 10, 20, 30, 40]), rel=1e-5)
    everything = evaluate_windows(model, ids, seq_len=seq_len, device=CPU)
    assert evaluate_windows(model, ids, seq_len=seq_len, device=CPU, max_windows=500) == everything


def test_each_framing_evaluates_as_its_model_reads():
    model = tiny_model(V)
    ids = random_ids(200, seed=7)
    assert StreamFraming(8).evaluate(model, ids, device=CPU, max_chars=50) == evaluate_stream(
        model, ids, device=CPU, max_chars=50)
    assert WindowFraming(8).evaluate(model, ids, device=CPU, max_chars=50) == evaluate_windows(
        model, ids, seq_len=8, device=CPU, max_windows=50)


def test_too_short_texts_are_refused():
    model = tiny_model(V)
    with pytest.raises(CorpusError, match="at least 2"):
        evaluate_stream(model, random_ids(1), device=CPU)
    with pytest.raises(ConfigError, match="max_chars"):
        evaluate_stream(model, random_ids(50), device=CPU, max_chars=0)
    with pytest.raises(CorpusError, match="more than 8"):
        evaluate_windows(model, random_ids(8), seq_len=8, device=CPU)
    assert evaluate_windows(model, random_ids(9), seq_len=8, device=CPU).characters == 1
    assert evaluate_stream(model, random_ids(2), device=CPU).characters == 1


def test_max_windows_zero_is_refused_as_a_setting():
    with pytest.raises(ConfigError):
        evaluate_windows(tiny_model(V), random_ids(50), seq_len=8, device=CPU, max_windows=0)


# ---- score_run on run folders ------------------------------------------------------------------


def test_score_run_scores_the_val_split_with_the_best_checkpoint(runs_dir):
    run = runs_dir / "stream"
    loaded = load_model(run)
    val = open_prepared(run / DATA_DIR).split("val")
    assert len(val) > 0
    result = score_run(run)
    assert result == evaluate_stream(loaded.model, np.asarray(val, dtype=np.int64), device=CPU)
    assert result.characters == len(val) - 1


def test_score_run_on_a_given_text(runs_dir, tmp_path):
    run = runs_dir / "stream"
    other = write_text(tmp_path / "other.txt", words=150, seed=9)
    loaded = load_model(run)
    ids = loaded.vocab.encode(load_text([other], loaded.meta.corpus_config))
    assert score_run(run, [other]) == evaluate_stream(loaded.model, ids, device=CPU)


def test_score_run_split_errors(runs_dir):
    with pytest.raises(CorpusError, match="no test split"):
        score_run(runs_dir / "stream", split="test")
    with pytest.raises(ConfigError, match="val or test"):
        score_run(runs_dir / "stream", split="train")


def test_a_run_without_a_val_split_must_be_given_text(runs_dir, tmp_path):
    run = runs_dir / "window"
    with pytest.raises(CorpusError, match="no val split"):
        score_run(run)
    # The first 40 of the 60 training words; the preset's lowercasing applies to it too.
    text = write_text(tmp_path / "other.txt", words=40, seed=0)
    assert any(c.isupper() for c in text.read_text(encoding="utf-8"))
    result = score_run(run, [text])
    seq_len = load_model(run).seq_len
    assert result.characters == len(text.read_text(encoding="utf-8").strip("\n")) - seq_len


def test_a_checkpoint_outside_its_run_needs_text(runs_dir, tmp_path):
    checkpoint = tmp_path / "copy.safetensors"
    shutil.copy(runs_dir / "stream" / "last.safetensors", checkpoint)
    with pytest.raises(CorpusError, match="no data folder"):
        score_run(checkpoint)
    text = write_text(tmp_path / "t.txt", words=100, seed=4)
    assert score_run(checkpoint, [text]).characters > 0


def test_score_run_unknown_character_policy(runs_dir, tmp_path):
    run = runs_dir / "stream"
    clean = sample_text(100, seed=5)
    assert "fox" in clean and "dog" in clean
    dirty = tmp_path / "dirty.txt"
    dirty.write_text(clean.replace("fox", "f☃ox").replace("dog", "dog€"), encoding="utf-8")
    with pytest.raises(UnknownCharactersError) as caught:
        score_run(run, [dirty])
    assert caught.value.unknown == ["€", "☃"]
    clean_file = tmp_path / "clean.txt"
    clean_file.write_text(clean, encoding="utf-8")
    assert score_run(run, [dirty], unknown="drop") == score_run(run, [clean_file])
    spaced = tmp_path / "spaced.txt"
    spaced.write_text(clean.replace("fox", "f ox").replace("dog", "dog "), encoding="utf-8")
    assert score_run(run, [dirty], unknown="replace", replacement=" ") == score_run(run, [spaced])


def _file_digests(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_eval_dynamic_reports_both_scores_and_writes_nothing(runs_dir):
    run = runs_dir / "stream"
    before = _file_digests(run)
    result = invoke("eval", str(run), "--dynamic", "--dynamic-lr", "0.001", "--dynamic-seq-len", "20",
                    "--json")
    assert result.exit_code == 0, result.output
    both = json.loads(result.stdout)
    static = score_run(run)
    assert both["static"]["characters"] == static.characters
    assert both["static"]["loss"] == pytest.approx(static.loss, abs=0.05)  # one stream, not EVAL_ROWS rows
    assert both["dynamic"]["loss"] != both["static"]["loss"]
    assert both["dynamic_settings"]["seq_len"] == 20
    assert _file_digests(run) == before


def test_eval_dynamic_refuses_a_window_model(runs_dir, tmp_path):
    text = write_text(tmp_path / "t.txt", words=60)
    result = invoke("eval", str(runs_dir / "window"), str(text), "--dynamic")
    assert result.exit_code != 0 and "stream-framed" in result.output


def test_eval_max_chars_scores_the_first_characters(tmp_path):
    run = train_stream_run(tmp_path / "run", write_text(tmp_path / "t.txt", words=2000))
    whole = json.loads(invoke("eval", run, "--json").stdout)
    capped = json.loads(invoke("eval", run, "--json", "--max-chars", "700").stdout)
    assert capped["characters"] == 700 < whole["characters"]
    assert json.loads(invoke("eval", run, "--json", "--max-chars", "all").stdout) == whole
    val = open_prepared(run / DATA_DIR).split("val")
    expected = evaluate_stream(load_model(run).model, val[:701], device=torch.device("cpu"))
    assert capped["loss"] == pytest.approx(expected.loss, rel=1e-6)


def test_a_loss_past_float_range_has_an_infinite_perplexity_written_as_null():
    result = EvalResult(loss=800.0, characters=5)
    assert result.perplexity == math.inf
    assert result.as_dict()["perplexity"] is None and json.dumps(result.as_dict())
