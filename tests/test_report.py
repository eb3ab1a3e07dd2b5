"""``charlstm report``: the HTML file, its embedded plot, samples, escaping, and the CLI's exit codes."""

from __future__ import annotations

import base64
import re
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import Result

from _runs import invoke, sample_text
from charlstm import train
from charlstm.analysis.report import build_report, headline, loss_curves
from charlstm.runs.metrics import read_metrics

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EMBEDDED_PNG = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")
# Markup characters in the training text, so the model can write them and a prompt can use them.
MARKUP = "Tom & Jerry wrote <b>bold</b> & 'quoted' <i>words</i>.\n"


def write_corpus(path: Path) -> Path:
    path.write_text(sample_text(500) + MARKUP * 10, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def stream_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    run = tmp / "run"
    train([write_corpus(tmp / "text.txt")], out_dir=run, max_steps=6, eval_every=3, hidden_size=16,
          num_layers=1, embedding_size=8, seq_len=16, batch_size=4, progress_bar=False)
    return run


@pytest.fixture(scope="module")
def tutorial_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report-tutorial")
    run = tmp / "run"
    train([write_corpus(tmp / "text.txt")], out_dir=run, preset="tutorial", hidden_size=8, seq_len=10,
          batch_size=64, epochs=2, progress_bar=False)
    return run


def embedded_png(page: str) -> bytes:
    found = EMBEDDED_PNG.findall(page)
    assert len(found) == 1
    return base64.b64decode(found[0], validate=True)


def assert_one_error_line(result: Result, exit_code: int, fragment: str) -> None:
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("charlstm: error: ") and fragment in lines[0], lines


def test_report_is_one_self_contained_file(stream_run: Path):
    path = build_report(stream_run, length=120, seed=3)
    assert path == stream_run / "report.html"
    page = path.read_text(encoding="utf-8")
    png = embedded_png(page)
    assert png.startswith(PNG_SIGNATURE)
    assert (stream_run / "report-loss.png").read_bytes() == png  # the same plot beside it
    assert "src=\"http" not in page and "src='http" not in page  # nothing fetched from elsewhere


def test_report_quotes_the_best_validation_loss(stream_run: Path):
    page = build_report(stream_run, stream_run / "best.html", length=40).read_text(encoding="utf-8")
    best = min(m["val_loss"] for m in read_metrics(stream_run) if "val_loss" in m)
    assert "best validation loss" in page
    assert f"{best:.4f} nats/char" in page
    assert "parameters" in page and "auto" in page  # the run's size and preset


def test_report_has_four_temperatures_with_novelty(stream_run: Path):
    page = build_report(stream_run, stream_run / "t.html", length=120).read_text(encoding="utf-8")
    for temperature in ("0.2", "0.5", "0.8", "1.0"):
        assert f"<h3>temperature {temperature}</h3>" in page
    rows = re.findall(r"<tr><td class='num'>(\d\.\d)</td>((?:<td class='num'>[^<]*</td>){4})</tr>", page)
    assert [t for t, _ in rows] == ["0.2", "0.5", "0.8", "1.0"]
    for _, cells in rows:  # 10-gram share, 20-gram share, longest copy, word share
        ten, twenty, longest, words = re.findall(r"<td class='num'>([^<]*)</td>", cells)
        assert re.fullmatch(r"\d+\.\d%", ten) and re.fullmatch(r"\d+\.\d%", twenty)
        assert longest.isdigit()
        assert re.fullmatch(r"\d+\.\d%|n/a", words)
    assert page.count("Longest copy, ") == 4


def test_a_running_text_keeps_its_sections_and_shows_no_items(stream_run: Path):
    page = build_report(stream_run, stream_run / "text.html", length=60).read_text(encoding="utf-8")
    for section in ("<h2>Results</h2>", "<h2>Loss</h2>", "<h2>Samples</h2>", "10-grams copied", "real words"):
        assert section in page
    assert "training text</th><td>" in page and "characters (train split)" in page
    assert "held-out items" not in page and "<ul class='items'>" not in page and "label kept" not in page


def test_a_short_sample_shows_n_a(stream_run: Path):
    page = build_report(stream_run, stream_run / "short.html", length=5).read_text(encoding="utf-8")
    assert "<td class='num'>n/a</td>" in page  # 5 characters hold no 10-gram


def test_text_is_escaped(stream_run: Path):
    page = build_report(stream_run, stream_run / "esc.html", prompt="<b>&", length=200,
                        seed=5).read_text(encoding="utf-8")
    assert "&lt;b&gt;&amp;" in page
    body = page.split("<body>", 1)[1]
    # The page's own markup never uses <b> or <i>: any here would be unescaped text.
    assert "<b>" not in body and "<i>" not in body and "</b>" not in body


def test_a_tutorial_run_plots_its_epoch_training_loss(tutorial_run: Path):
    page = build_report(tutorial_run, length=60).read_text(encoding="utf-8")
    assert embedded_png(page).startswith(PNG_SIGNATURE)
    assert "best training loss (epoch mean)" in page and "best validation loss" not in page
    assert "holds no text out" in page
    assert page.count("Longest copy, ") == 4  # no prompt: samples start from a training window


def test_a_run_without_val_or_epoch_end_plots_the_recent_training_loss():
    metrics = [{"step": 5, "epoch": 1, "train_loss": 2.0}, {"step": 9, "epoch": 1, "train_loss": 1.5}]
    curves, has_val = loss_curves(metrics)
    assert not has_val and curves == {"training loss (recent mean)": ([5, 9], [2.0, 1.5])}
    best = headline(metrics, has_val)
    assert best["label"] == "best training loss (recent mean)" and (best["loss"], best["step"]) == (1.5, 9)
    assert headline([], False) is None
    assert all(not steps for steps, _ in loss_curves([])[0].values())


def test_cli_writes_the_report(stream_run: Path, tmp_path: Path):
    out = tmp_path / "sub" / "r.html"
    result = invoke("report", stream_run, "--out", out, "--length", 60, "--prompt", "the ")
    assert result.exit_code == 0, result.output
    assert out.is_file() and (tmp_path / "sub" / "r-loss.png").is_file()
    assert str(out) in result.stderr


def test_out_may_be_a_folder_but_not_an_unwritable_path(stream_run: Path, tmp_path: Path):
    assert build_report(stream_run, tmp_path, length=20) == tmp_path / "report.html"
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    assert_one_error_line(invoke("report", stream_run, "--out", blocker / "r.html", "--length", 20), 2,
                          "cannot write the report")


def test_cli_missing_run_exits_4(tmp_path: Path):
    assert_one_error_line(invoke("report", tmp_path / "nope"), 4, "nope")


def test_cli_checkpoint_outside_a_run_folder_exits_4(stream_run: Path, tmp_path: Path):
    lone = tmp_path / "lone.safetensors"
    shutil.copy(stream_run / "last.safetensors", lone)
    assert_one_error_line(invoke("report", lone), 4, "run folder")


def test_cli_without_matplotlib_says_what_to_install(stream_run: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert_one_error_line(invoke("report", stream_run), 2, "pip install 'charlstm[report]'")
