"""The character transformer of bench/_transformer.py given charlstm's care: a sweep of its settings.

Each setting trains for ``--budget`` seconds on the training split charlstm makes of the
corpus (the same 90/10 split as bench/vs_transformer.py) and is scored on the whole held-out
split with sliding windows of its own context (windows of ``block_size`` every half block, each
character scored once). The best setting is the baseline the comparisons quote.

    python bench/transformer_sweep.py                                   # 5 minutes each, Origin of Species
    python bench/transformer_sweep.py --budget 30m --corpus war_and_peace --settings b32-4x192,b32-6x192
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

import _report
import _transformer
from charlstm.model.runtime import resolve_device
from charlstm.training import session as api
from quality_vs_time import parse_duration
from vs_transformer import CORPORA_DIR, run_transformer

CORPORA = {"species": "origin_of_species.txt", "war_and_peace": "war_and_peace.txt"}
BASE = _transformer.Recipe()
# Batch rows, learning rate, width/depth, context and dropout, each moved from the published recipe.
SETTINGS = {
    "published": BASE,
    "b32": replace(BASE, batch_size=32),
    "b32-lr2e-3": replace(BASE, batch_size=32, lr=2e-3, min_lr=2e-4),
    "b32-lr3e-3": replace(BASE, batch_size=32, lr=3e-3, min_lr=3e-4),
    "b32-lr5e-3": replace(BASE, batch_size=32, lr=5e-3, min_lr=5e-4),
    "b32-lr3e-3-drop0.1": replace(BASE, batch_size=32, lr=3e-3, min_lr=3e-4, dropout=0.1),
    "block128": replace(BASE, batch_size=16, block_size=128, lr=2e-3, min_lr=2e-4),
    "w192": replace(BASE, n_embd=192, n_head=6, n_layer=3, batch_size=24, lr=2e-3, min_lr=2e-4),
    "d6": replace(BASE, n_layer=6, batch_size=24, lr=2e-3, min_lr=2e-4),
    "w256": replace(BASE, n_embd=256, n_head=4, n_layer=4, batch_size=24, lr=1e-3),
    "b32-lr2e-3-drop0.1": replace(BASE, batch_size=32, lr=2e-3, min_lr=2e-4, dropout=0.1),
}
TUNED_NAME = next(name for name, recipe in SETTINGS.items() if recipe == _transformer.TUNED)
FIRST_SWEEP = tuple(SETTINGS)  # the 5-minute sweep on Origin of Species that chose TUNED
# Larger sizes for longer budgets: the tuned rows at the lr the 5-minute sweep's larger models took
# (the 4 x 128 of TUNED is the first size, run by bench/vs_transformer.py).
SETTINGS |= {
    "b32-4x192": replace(_transformer.TUNED, n_embd=192, n_head=6, lr=2e-3, min_lr=2e-4),
    "b32-6x192": replace(_transformer.TUNED, n_embd=192, n_head=6, n_layer=6, lr=2e-3, min_lr=2e-4),
}


def split_of(corpus: Path, workdir: Path) -> tuple[np.ndarray, np.ndarray, int, int]:
    """charlstm's own split of the corpus (train ids, held-out ids, vocabulary size, seed)."""
    trainer = api.start_run([corpus], workdir, preset="auto", overrides={"time_budget": 60.0},
                            progress_bar=False)
    return (np.asarray(trainer.data.split("train")), np.asarray(trainer.val_ids),
            len(trainer.data.vocab), trainer.config.seed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=parse_duration, default=300.0, help="training time per setting")
    parser.add_argument("--corpus", choices=list(CORPORA), default="species")
    parser.add_argument("--corpora", type=Path, default=CORPORA_DIR)
    parser.add_argument("--settings", default=",".join(FIRST_SWEEP),
                        help=f"comma-separated names to run, of {', '.join(SETTINGS)}")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--add", action="store_true",
                        help="add these settings to the recorded sweep of the same corpus and budget")
    parser.add_argument("--baseline-from", metavar="SECTION",
                        help="add the tuned transformer's run of a recorded bench/vs_transformer.py "
                             "comparison (bench/results/SECTION.json) of the same corpus and budget")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    names = args.settings.split(",")
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        parser.error(f"unknown settings {unknown}; known: {', '.join(SETTINGS)}")
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory(prefix="charlstm-sweep-") as tmp:
        train_ids, val_ids, vocab, seed = split_of(args.corpora / CORPORA[args.corpus], Path(tmp) / "run")
    section = f"transformer_sweep_{args.corpus}_{int(args.budget)}s"
    results: dict[str, Any] = _report.read_json(section)["results"] if args.add else {}
    if args.baseline_from:
        compared = _report.read_json(args.baseline_from)["results"][args.corpus]["transformer"]
        results[TUNED_NAME] = {**compared, "from": args.baseline_from}
    for name in names:
        print(f"[{name}] {args.budget:g} s ...", flush=True)
        out = run_transformer(train_ids, val_ids, vocab, args.budget, args.budget / 5, device, seed,
                              SETTINGS[name])
        out["recipe"] = asdict(SETTINGS[name])
        out["added"] = args.add  # run after the first sitting, on the same machine
        results[name] = out
        print(f"[{name}] loss {out['final']['loss']:.4f} steps {out['steps']} "
              f"chars/s {out['chars_per_s']:,.0f}", flush=True)
    data = {"budget_s": args.budget, "corpus": args.corpus, "train_chars": len(train_ids),
            "val_chars": len(val_ids), "vocab": vocab, "results": results,
            "best": min(results, key=lambda n: results[n]["final"]["loss"])}
    blocks = sweep_blocks(data)
    print("\n" + "\n\n".join(blocks))
    if args.no_write:
        return
    info = _report.machine_info()
    markdown = _report.section_markdown(
        f"The transformer tuned: a sweep on {args.corpus} at {args.budget / 60:g} minutes "
        "(`bench/transformer_sweep.py`)", info, blocks)
    _report.record(section, markdown, {"machine": info, **data})


def sweep_blocks(data: dict[str, Any]) -> list[str]:
    """The sweep's notes and table, from what it records."""
    header = ["setting", "layers x width", "heads", "batch x context", "lr", "dropout", "parameters",
              "steps", "chars/s", "held-out loss", "bits/char"]
    rows = []
    for name, out in data["results"].items():
        r = out["recipe"]
        label = name + (" (added)" if out.get("added") else "")
        label += " (from the comparison)" if out.get("from") else ""
        rows.append([f"**{label}**" if name == data["best"] else label, f"{r['n_layer']} x {r['n_embd']}",
                     r["n_head"], f"{r['batch_size']} x {r['block_size']}", f"{r['lr']:g}", r["dropout"],
                     f"{out['params']:,}", out["steps"], f"{out['chars_per_s']:,.0f}",
                     f"{out['final']['loss']:.4f}", f"{out['final']['bits_per_char']:.3f}"])
    notes = [f"{data['corpus']}: {data['train_chars']:,} training and {data['val_chars']:,} held-out "
             f"characters (charlstm's split), {data['vocab']} symbols; {data['budget_s']:g} s of training "
             "per setting, fp32 (under bf16 autocast the transformer was not faster on this CPU: 0.08x its "
             "fp32 steps/s at 12 rows, 0.96x at 32, the comparisons' probes).",
             "Every setting keeps the recipe's AdamW (betas 0.9/0.99, weight decay 0.1), clipping at 1, "
             "100 warm-up steps and a cosine decay to lr/10 on the wall clock.",
             "Scored on the whole held-out split with sliding windows of the setting's own context "
             "(every half block; each character once). Best in bold; (added): run in a later sitting "
             "on the same machine, after the first ones pointed at a higher learning rate."]
    if sources := sorted({out["from"] for out in data["results"].values() if out.get("from")}):
        notes.append("(from the comparison): the tuned transformer's run in the recorded "
                     + ", ".join(f"`{s}`" for s in sources) + " comparison (bench/vs_transformer.py), "
                     "same split, budget and machine, scored the same way.")
    return [_report.bullets(notes), _report.markdown_table(header, rows)]


if __name__ == "__main__":
    sys.exit(main())
