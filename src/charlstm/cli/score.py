"""``charlstm score``: how likely each file, line or item is, and a labelled list model's classifier.

Thin over ``charlstm.analysis.score``: the figures are the library's, printed as a table or as
JSON lines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from charlstm.cli.options import config_flags
from charlstm.config.sample import SampleConfig

if TYPE_CHECKING:
    from charlstm.analysis.score import Classification, Confusion, Score
    from charlstm.runs.loading import LoadedModel

PANEL = "Lists of things"
CORNER = "true \\ predicted"  # the confusion table's top left


@config_flags(SampleConfig, only={"unknown", "replacement"})
def score(
    run: Annotated[Path, typer.Argument(help="Run folder (its best checkpoint) or a checkpoint file.")],
    file: Annotated[list[Path], typer.Argument(
        help="Text files, each read as one stream; for a model of a list, files of items read as its "
             "training list was.")],
    per: Annotated[str | None, typer.Option(
        metavar="item|line|file",
        help="What one score covers: a list model's items; a text model's files (the default) or "
             "lines, read in the file's stream.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    top: Annotated[int | None, typer.Option(
        min=1, max=10, metavar="K",
        help="Each position's K most likely characters and the actual one's rank (JSON lines).")
    ] = None,
    sort: Annotated[bool, typer.Option(
        "--sort", help="Least likely first: the lowest mean log-probability per character (with "
                       "--classify, the lowest posterior).")] = False,
    classify: Annotated[bool, typer.Option(
        "--classify", rich_help_panel=PANEL,
        help="A model trained with labels: each item's most likely label and its posterior; with "
             "true labels in the files, the accuracy and a confusion table.")] = False,
    labels: Annotated[bool, typer.Option(
        rich_help_panel=PANEL,
        help="Read each item's label from the run's label column; --no-labels reads files without "
             "it (an item is then scored over all labels).")] = True,
    device: Annotated[str, typer.Option()] = "cpu",
    **settings: Any,
) -> None:
    """Log-probability of each file, line or item, and bits/char (--sort: odd ones first)."""
    from charlstm.analysis import score as scoring
    from charlstm.errors import ConfigError
    from charlstm.model.runtime import resolve_device
    from charlstm.runs.loading import load_model

    if classify and (top is not None or per not in (None, "item")):
        raise ConfigError("--classify labels whole items: leave out --top and --per")
    loaded = load_model(run, resolve_device(device))
    if classify:
        found = scoring.classify_records(loaded, scoring.read_items(loaded, file, labels=labels), **settings)
        _print_classes(loaded, sorted(found, key=lambda c: c.posterior) if sort else found, json_out)
        return
    scores = scoring.score_files(loaded, file, per=per, top=top or 0, labels=labels, **settings)
    if sort:
        scores = sorted(scores, key=lambda s: s.mean_logprob)
    if json_out or top:
        for one in scores:
            typer.echo(json.dumps(_score_json(loaded, one), ensure_ascii=False))
        return
    typer.echo(f"{'chars':>7} {'logprob':>12} {'mean':>8} {'bits/char':>9}  where  text")
    for one in scores:
        label = f"  [{one.label}]" if one.label is not None else ""
        text = f"  {_shown(one.text)}" if one.text is not None else ""
        typer.echo(f"{one.chars:>7} {one.logprob:>12.4f} {one.mean_logprob:>8.4f} {one.bits_per_char:>9.4f}"
                   f"  {one.where}{text}{label}")


def _score_json(loaded: LoadedModel, one: Score) -> dict[str, Any]:
    record: dict[str, Any] = {"where": one.where}
    if one.text is not None:
        record["text"] = one.text
    if one.label is not None:
        record["label"] = one.label
    record.update(chars=one.chars, logprob=round(one.logprob, 6), mean_logprob=round(one.mean_logprob, 6),
                  bits_per_char=round(one.bits_per_char, 6))
    at = one.positions
    if at is not None and at.top_ids.shape[1]:
        chars = loaded.vocab.chars
        record["positions"] = [
            {"char": chars[target], "logprob": round(logprob, 6), "rank": rank,
             "top": [[chars[i], round(lp, 6)] for i, lp in zip(ids, lps, strict=True)]}
            for target, logprob, rank, ids, lps in zip(
                at.targets.tolist(), at.logprobs.tolist(), at.ranks.tolist(), at.top_ids.tolist(),
                at.top_logprobs.tolist(), strict=True)]
    return record


def _print_classes(loaded: LoadedModel, found: list[Classification], json_out: bool) -> None:
    """Each item's label and posterior; then, where the files gave labels, accuracy and confusion."""
    from charlstm.analysis.score import confusion

    table = confusion(found, loaded.meta.items.labels)
    if json_out:
        for c in found:
            typer.echo(json.dumps({"where": c.where, "text": c.text, "label": c.label,
                                   "predicted": c.predicted, "posterior": round(c.posterior, 6),
                                   "posteriors": {k: round(v, 6) for k, v in c.posteriors.items()}},
                                  ensure_ascii=False))
        if table is not None:
            typer.echo(json.dumps({"accuracy": table.accuracy, "correct": int(table.counts.trace()),
                                   "items": int(table.counts.sum()), "labels": table.labels,
                                   "confusion": table.counts.tolist()}, ensure_ascii=False))
        return
    width = max(len(label) for label in [*table.labels, "predicted"]) if table else 9
    typer.echo(f"{'predicted':<{width}} posterior  {'label':<{width}}  where  text")
    for c in found:
        typer.echo(f"{c.predicted:<{width}} {c.posterior:>9.4f}  {c.label or '-':<{width}}  {c.where}  "
                   f"{_shown(c.text)}")
    if table is not None:
        typer.echo("")
        typer.echo(_confusion_text(table))


def _confusion_text(table: Confusion) -> str:
    """Accuracy, then counts: a row per true label, a column per predicted one."""
    correct, items = int(table.counts.trace()), int(table.counts.sum())
    width = max(len(label) for label in [*table.labels, CORNER])
    columns = [max(len(label), len(str(table.counts.max()))) for label in table.labels]
    lines = [f"accuracy {table.accuracy:.4f}: {correct} of {items} labelled items",
             f"{CORNER:<{width}}  " + "  ".join(
                 f"{label:>{w}}" for label, w in zip(table.labels, columns, strict=True))]
    for label, row in zip(table.labels, table.counts.tolist(), strict=True):
        lines.append(f"{label:<{width}}  " + "  ".join(
            f"{n:>{w}}" for n, w in zip(row, columns, strict=True)))
    return "\n".join(lines)


def _shown(text: str) -> str:
    """An item or line on one row: its line breaks and tabs written as \\n and \\t."""
    return text.replace("\n", "\\n").replace("\t", "\\t")
