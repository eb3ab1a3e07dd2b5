"""A run's report as one self-contained HTML file: loss curves, headline figures, samples, novelty.

    RUN/report.html        the page; the loss plot is embedded in it as a base64 PNG
    RUN/report-loss.png    the same plot as a file, for slides and READMEs

Samples are scored against the run's training split (the text the model learned from) with the
measures in ``novelty.py``; a model of a list shows whole items instead (``report_items.py``).
Runs without a held-out split (the tutorial presets) plot and quote the epoch training loss
instead, and say so.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from charlstm.analysis.novelty import NoveltyIndex
from charlstm.analysis.report_items import ITEMS_PER_TEMPERATURE, items_section, percent
from charlstm.config.choices import InputEncoding
from charlstm.config.sample import SampleConfig
from charlstm.data.prepared import open_prepared
from charlstm.data.records import END
from charlstm.data.vocab import Vocab
from charlstm.errors import CheckpointError, ConfigError
from charlstm.generation.generators import generate
from charlstm.generation.sampling import SAMPLE_TEMPERATURES
from charlstm.model.loss import NATS_TO_BITS, bits_per_char
from charlstm.model.runtime import resolve_device
from charlstm.runs.checkpoint import read_meta
from charlstm.runs.folder import LAST, data_dir, read_record
from charlstm.runs.loading import LoadedModel, load_model
from charlstm.runs.metrics import best_record, read_metrics

REPORT_FILE = "report.html"
TRAINING_LABELS = {  # metrics.jsonl key -> what it is
    "epoch_train_loss": "training loss (epoch mean)",
    "train_loss": "training loss (recent mean)",
}


@dataclass(frozen=True)
class Sample:
    temperature: float
    prompt: str  # as the model read it: cleaned, or the training window it picked
    text: str  # the generated characters, prompt excluded
    novelty: dict[str, Any]


def _require_matplotlib() -> None:
    """Fail before any work is done when the optional plotting dependency is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError(
            "the report plots with matplotlib, which is not installed: pip install 'charlstm[report]'"
        ) from None


def loss_curves(metrics: list[dict[str, Any]]) -> tuple[dict[str, tuple[list, list]], bool]:
    """The curves to plot, label -> (steps, losses), and whether they include a validation loss."""

    def curve(key: str) -> tuple[list, list]:
        points = [(m["step"], m[key]) for m in metrics if m.get(key) is not None]
        return [s for s, _ in points], [v for _, v in points]

    if any("val_loss" in m for m in metrics):
        curves = {TRAINING_LABELS["train_loss"]: curve("train_loss"), "validation loss": curve("val_loss")}
        return curves, True
    # A run stopped inside its first epoch has no epoch mean yet: the recent mean is what there is.
    key = _training_key(metrics)
    return {TRAINING_LABELS[key]: curve(key)}, False


def _training_key(metrics: list[dict[str, Any]]) -> str:
    return "epoch_train_loss" if any("epoch_train_loss" in m for m in metrics) else "train_loss"


def plot_png(curves: dict[str, tuple[list, list]], title: str) -> bytes:
    """The loss curves as PNG bytes, drawn on Agg directly so no pyplot or GUI backend is touched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(8, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, (steps, losses) in curves.items():
        if steps:  # markers while points are few, or a single evaluation would draw nothing
            ax.plot(steps, losses, label=label, marker="o" if len(steps) <= 30 else None, markersize=4)
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no step 3.5 on short runs
    ax.set_ylabel("loss (nats/char)")
    bits = ax.secondary_yaxis("right", functions=(lambda x: x * NATS_TO_BITS, lambda x: x / NATS_TO_BITS))
    bits.set_ylabel("bits/char")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def headline(metrics: list[dict[str, Any]], has_val: bool) -> dict[str, Any] | None:
    """The best evaluation: validation loss when the run holds text out, else epoch training loss."""
    key = "val_loss" if has_val else _training_key(metrics)
    best = best_record(metrics, key)
    if best is None:
        return None
    loss = best[key]
    label = "best validation loss" if has_val else f"best {TRAINING_LABELS[key]}"
    return {"metric": key, "label": label, "loss": loss, "bits_per_char": bits_per_char(loss),
            "perplexity": math.exp(loss), "step": best["step"]}


def training_text(run_dir: Path, vocab: Vocab) -> str:
    """The run's training split as text."""
    return vocab.decode(open_prepared(data_dir(run_dir)).split("train"))


def draw_samples(
    loaded: LoadedModel, prompt: str | None, *, length: int, seed: int, index: NoveltyIndex
) -> list[Sample]:
    """One sample per temperature, all from the same seed so they differ only by temperature."""
    samples = []
    for temperature in SAMPLE_TEMPERATURES:
        used_prompt, steps = generate(loaded, prompt, SampleConfig(length=length, temperature=temperature,
                                                                   seed=seed))
        text = "".join(step[0] for step in steps)
        samples.append(Sample(temperature, used_prompt, text, index.novelty(text)))
    return samples


def build_report(
    run: str | Path, out: str | Path | None = None, *, length: int = 400, prompt: str | None = None,
    seed: int = 1, device: str = "cpu", items: int = ITEMS_PER_TEMPERATURE,
) -> Path:
    """Write the HTML report (default RUN/report.html) and its PNG plot; return the HTML's path.

    ``length``: characters per sample of a running text; ``items``: items per temperature of a list."""
    _require_matplotlib()
    if length < 1 or items < 1:
        raise ConfigError("length and items must be at least 1")
    loaded = load_model(Path(run), resolve_device(device))
    run_dir = loaded.run_dir
    if run_dir is None:
        raise CheckpointError(f"{run}: a report needs the run folder (metrics and training text), "
                              "not a checkpoint on its own")
    out = Path(out) if out is not None else run_dir / REPORT_FILE
    if out.is_dir():
        out = out / REPORT_FILE
    metrics = read_metrics(run_dir)
    curves, has_val = loss_curves(metrics)
    text = training_text(run_dir, loaded.vocab)
    if loaded.meta.items is None:
        samples = _samples_html(draw_samples(loaded, prompt, length=length, seed=seed,
                                             index=NoveltyIndex(text)), seed)
    else:
        samples = items_section(loaded, count=items, seed=seed, prompt=prompt)

    png = None
    if any(steps for steps, _ in curves.values()):
        png = plot_png(curves, "training and validation loss" if has_val else
                       "training loss: this run holds no text out")
    facts = run_facts(loaded, run_dir, text, metrics)
    page = render(run_dir.name, facts, headline(metrics, has_val), has_val, png, samples)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if png is not None:
            out.with_name(out.stem + "-loss.png").write_bytes(png)
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot write the report to {out}: {exc.strerror or exc}; choose another --out"
        ) from None
    return out


def run_facts(
    loaded: LoadedModel, run_dir: Path, text: str, metrics: list[dict[str, Any]]
) -> list[tuple[str, str]]:
    """(label, value) rows describing the run: preset, model, data, training, checkpoint."""
    record = read_record(run_dir)
    model, train = loaded.meta.model_config, loaded.meta.train_config
    # The best checkpoint's counters stop at its own step; `last` has how far the run went.
    last = run_dir / LAST
    steps = (read_meta(last) if last.is_file() else loaded.meta).progress.step
    epochs = f" in {metrics[-1]['epoch']} epoch(s)" if metrics and "epoch" in metrics[-1] else ""
    input_part = (f"embedding {model.embedding_size}" if model.input_encoding == InputEncoding.EMBEDDING
                  else f"{model.input_encoding} input")
    sources, info = record.sources, loaded.meta.items
    shown = ", ".join(sources[:3]) + (f" and {len(sources) - 3} more" if len(sources) > 3 else "")
    data = (("training text", f"{len(text):,} characters (train split) from {shown or '?'}") if info is None
            else ("training list", f"{text.count(END):,} items (train split) from {shown or '?'}"
                  + (f"; labels {', '.join(info.labels)}" if info.labels else "")))
    return [
        ("preset", record.preset or "?"),
        ("model", f"{model.cell.upper()} {model.num_layers} x {model.hidden_size}, {input_part}, "
                  f"dropout {model.dropout}"),
        ("parameters", f"{loaded.model.num_parameters():,}"),
        ("vocabulary", f"{len(loaded.vocab)} characters"),
        data,
        ("framing", f"{train.framing}, seq_len {train.seq_len}, batch {train.batch_size}"),
        ("optimizer", f"{train.optimizer}, lr {train.lr:g} ({train.lr_schedule})"),
        ("steps", f"{steps:,}{epochs}" if isinstance(steps, int) else "?"),
        ("sampled from", loaded.path.name),
    ]


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
td, th { border-bottom: 1px solid #ddd; padding: 0.25rem 0.8rem 0.25rem 0; text-align: left;
         vertical-align: top; }
td.num, th.num { text-align: right; }
img { max-width: 100%; }
pre { white-space: pre-wrap; word-wrap: break-word; background: #f6f6f4; padding: 0.8rem;
      border-radius: 4px; }
.prompt { color: #777; }
mark { background: #ffe38a; }
.note { color: #555; font-size: 0.92rem; }
ul.items { columns: 12rem; margin-top: 0; }
ul.items li { white-space: pre-wrap; }
"""


def render(
    name: str, facts: list[tuple[str, str]], best: dict[str, Any] | None, has_val: bool, png: bytes | None,
    samples_html: str,
) -> str:
    """The HTML page; every piece of text passes through html.escape (``samples_html`` already did)."""
    e = html.escape
    parts = [f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
             f"<title>charlstm report: {e(name)}</title><style>{_STYLE}</style></head><body>",
             f"<h1>charlstm report: {e(name)}</h1>",
             f"<p class='note'>Written {e(datetime.now().isoformat(timespec='seconds'))}.</p>",
             "<h2>Results</h2>"]
    if best is None:
        parts.append("<p>No evaluation is recorded in metrics.jsonl yet.</p>")
    else:
        parts.append(
            f"<table><tr><th>{e(best['label'])}</th><td class='num'>{best['loss']:.4f} nats/char</td></tr>"
            f"<tr><th>bits per character</th><td class='num'>{best['bits_per_char']:.4f}</td></tr>"
            f"<tr><th>perplexity</th><td class='num'>{best['perplexity']:.3f}</td></tr>"
            f"<tr><th>at step</th><td class='num'>{best['step']:,}</td></tr></table>")
        if not has_val:
            parts.append("<p class='note'>This run holds no text out (as the tutorial presets), so these "
                         "are training-loss figures: they do not show how well it does on new text.</p>")
    rows = "".join(f"<tr><th>{e(label)}</th><td>{e(value)}</td></tr>" for label, value in facts)
    parts.append(f"<table>{rows}</table>")
    parts.append("<h2>Loss</h2>")
    if png is None:
        parts.append("<p>Nothing to plot: metrics.jsonl holds no loss yet.</p>")
    else:
        encoded = base64.b64encode(png).decode("ascii")
        parts.append(f"<img alt='loss curves' src='data:image/png;base64,{encoded}'>")
    parts.append(samples_html)
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _samples_html(samples: list[Sample], seed: int) -> str:
    e = html.escape
    rows = "".join(
        f"<tr><td class='num'>{s.temperature:.1f}</td><td class='num'>{percent(s.novelty['ngram_10'])}</td>"
        f"<td class='num'>{percent(s.novelty['ngram_20'])}</td>"
        f"<td class='num'>{s.novelty['longest_copied_length']}</td>"
        f"<td class='num'>{percent(s.novelty['word_overlap'])}</td></tr>"
        for s in samples)
    parts = [
        "<h2>Samples</h2>",
        f"<p class='note'>{len(samples[0].text) if samples else 0} characters at each temperature "
        f"after the prompt (in grey), all with seed {seed}, so they differ only by temperature. "
        "Copied: the share of the sample's overlapping 10- and 20-character strings found verbatim "
        "in the training text, and the longest stretch found there (highlighted below). Real words: "
        "the share of its words (letters, with apostrophes inside, lowercased) that occur as words "
        "in the training text. High copying at low temperature is normal; at 1.0 it suggests "
        "memorisation.</p>",
        "<table><tr><th class='num'>temperature</th><th class='num'>10-grams copied</th>"
        "<th class='num'>20-grams copied</th><th class='num'>longest copy (chars)</th>"
        f"<th class='num'>real words</th></tr>{rows}</table>",
    ]
    for s in samples:
        span = s.novelty["longest_copied_span"]
        start = s.text.find(span) if span else -1
        body = (e(s.text) if start < 0 else e(s.text[:start]) + "<mark>" + e(span) + "</mark>"
                + e(s.text[start + len(span):]))
        # The newline after <pre> is the one HTML drops, so a prompt starting with one keeps it.
        parts.append(f"<h3>temperature {s.temperature:.1f}</h3>"
                     f"<pre>\n<span class='prompt'>{e(s.prompt)}</span>{body}</pre>"
                     f"<p class='note'>Longest copy, {len(span)} characters: "
                     f"<code>{e(repr(span))}</code></p>")
    return "\n".join(parts)
