"""Is the size ``auto`` picks the best one? charlstm trained for the same budget at other sizes.

Each size trains as ``charlstm train TEXT --time-budget B --num-layers L --hidden-size H`` does
(everything else as ``auto`` chooses it: precision, rows, regularisation) on the split of
bench/vs_transformer.py, and is scored as its charlstm row is: the final model reads the whole
held-out split once, its state carried. auto's own row is run too, or taken from a recorded
comparison of the same corpus and budget (``--auto-from``). The rule stands where its pick is
within ``MARGIN`` nats/char of the best size tried.

    python bench/auto_rule.py --corpus war_and_peace --budget 30m --sizes 2x512 \
        --auto-from vs_transformer_war_and_peace_1800s
    python bench/auto_rule.py --corpus war_and_peace --budget 30m --sizes 2x1024 --add
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import _report
from quality_vs_time import parse_duration
from vs_transformer import CORPORA, CORPORA_DIR, run_corpus

MARGIN = 0.02  # nats/char auto's pick may trail the best size tried by


def parse_size(text: str) -> tuple[int, int]:
    """'2x512' -> (num_layers, hidden_size)."""
    layers, _, width = text.lower().partition("x")
    try:
        return int(layers), int(width)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a size is LAYERSxWIDTH, e.g. 2x512, not {text!r}") from None


def run_size(label: str, budget: float, size: tuple[int, int] | None, workdir: Path,
             corpora: Path, device: str) -> dict[str, Any]:
    """One charlstm run at ``size`` (None: auto's own pick), scored at the end only."""
    settings = [] if size is None else [("num_layers", size[0]), ("hidden_size", size[1])]
    args = argparse.Namespace(budget=budget, interval=budget, device=device, set=settings,
                              only="charlstm", dynamic=False, corpora=corpora)
    out = run_corpus(label, args, workdir)
    return {**out["charlstm"], "train_chars": out["train_chars"], "val_chars": out["val_chars"]}


def size_of(run: dict[str, Any]) -> str:
    return f"{run['model']['num_layers']} x {run['model']['hidden_size']}"


def blocks_of(data: dict[str, Any]) -> list[str]:
    """The notes, table and verdict, from what was recorded."""
    runs = data["runs"]
    auto = runs["auto"]
    best = min(runs, key=lambda k: runs[k]["final"]["loss"])
    header = ["size", "parameters", "precision, rows", "dropout", "steps", "chars/s", "held-out loss",
              "against auto's"]
    rows = []
    for key, run in sorted(runs.items(), key=lambda kv: kv[1]["params"]):
        name = f"{size_of(run)} (auto's choice)" if key == "auto" else f"{size_of(run)} (`--sizes {key}`)"
        if run.get("added"):
            name += " (added)"
        loss = run["final"]["loss"]
        cells = [name, f"{run['params']:,}", f"{run['train']['precision']}, {run['train']['batch_size']}",
                 run["model"]["dropout"], run["steps"], f"{run['chars_per_s']:,.0f}", f"{loss:.4f}",
                 f"{loss - auto['final']['loss']:+.4f}"]
        rows.append([f"**{c}**" for c in cells] if key == best else cells)
    trail = auto["final"]["loss"] - runs[best]["final"]["loss"]
    added = any(run.get("added") for run in runs.values())
    source = data.get("auto_from")
    notes = [f"{data['corpus']} ({auto['train_chars']:,} training, {auto['val_chars']:,} held-out "
             f"characters), {data['budget_s'] / 60:g} minutes of training each, everything but the size as "
             "`auto` chooses it; held-out loss with the state carried through the whole held-out split.",
             "auto's row: " + (f"the charlstm run of the recorded `{source}` comparison, same split and "
                               "machine" if source else "run in this sitting")
             + f"; planned {auto['sizing']['planned_chars']:,} characters for it "
               f"({auto['sizing']['planned_epochs']} epochs)"
             + ("; (added): a later sitting on the same machine." if added else "."),
             f"Best in bold. auto's pick trails the best size tried by {trail:.4f} nats/char: "
             + ("within" if trail <= MARGIN else "more than") + f" {MARGIN}, so the rule "
             + ("stands" if trail <= MARGIN else "does not stand") + " here."]
    return [_report.bullets(notes), _report.markdown_table(header, rows)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=list(CORPORA), default="war_and_peace")
    parser.add_argument("--budget", type=parse_duration, default=1800.0)
    parser.add_argument("--sizes", type=lambda s: [parse_size(x) for x in s.split(",")], default=[],
                        help="comma-separated LAYERSxWIDTH to train beside auto's pick")
    parser.add_argument("--auto-from", metavar="SECTION",
                        help="take auto's run from bench/results/SECTION.json instead of training it")
    parser.add_argument("--add", action="store_true", help="add to the recorded check of this corpus/budget")
    parser.add_argument("--render", action="store_true",
                        help="train nothing: rewrite the section from the recorded check")
    parser.add_argument("--corpora", type=Path, default=CORPORA_DIR)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    section = f"auto_rule_{args.corpus}_{int(args.budget)}s"
    if args.render or args.add:
        data = _report.read_json(section)
        info = data.pop("machine")  # an added run is recorded with the machine it was measured on
        if args.render:
            write(args, section, info, data, blocks_of(data))
            return
    else:
        data = {"corpus": args.corpus, "budget_s": args.budget, "auto_from": args.auto_from, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="charlstm-auto-rule-") as tmp:
        if "auto" not in data["runs"]:
            if args.auto_from:
                out = _report.read_json(args.auto_from)["results"][args.corpus]
                data["runs"]["auto"] = {**out["charlstm"], "train_chars": out["train_chars"],
                                        "val_chars": out["val_chars"]}
            else:
                print(f"[auto] {args.budget:g} s ...", flush=True)
                data["runs"]["auto"] = run_size(args.corpus, args.budget, None, Path(tmp) / "auto",
                                                args.corpora, args.device)
        for layers, width in args.sizes:
            key = f"{layers}x{width}"
            print(f"[{key}] {args.budget:g} s ...", flush=True)
            run = run_size(args.corpus, args.budget, (layers, width), Path(tmp) / key, args.corpora,
                           args.device)
            data["runs"][key] = {**run, "added": args.add}
            print(f"[{key}] loss {run['final']['loss']:.4f}", flush=True)
    blocks = blocks_of(data)
    print("\n" + "\n\n".join(blocks))
    if args.no_write:
        return
    write(args, section, _report.machine_info(), data, blocks)


def write(args: argparse.Namespace, section: str, info: dict[str, Any], data: dict[str, Any],
          blocks: list[str]) -> None:
    """Record the check: its docs section and its results file."""
    heading = f"The auto rule on {args.corpus} at {args.budget / 60:g} minutes (`bench/auto_rule.py`)"
    _report.record(section, _report.section_markdown(heading, info, blocks), {"machine": info, **data})


if __name__ == "__main__":
    sys.exit(main())
