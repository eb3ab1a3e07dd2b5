"""Seconds per epoch of the tutorial presets, next to the Keras tutorial's own K520 GPU figures.

Each preset prepares the bundled text exactly as a real run would (a run folder
in a temporary directory); nothing is fitted. Instead the trainer's own
train_step runs on real shuffled batches of epoch 0: a few warm-up batches,
then --batches timed ones. The median batch time, times the batches in an
epoch, estimates the epoch.

    python bench/tutorial_epoch.py              # both presets, 30 timed batches each
    python bench/tutorial_epoch.py --large --batches 3 --no-write
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import _report
from charlstm.training import session as api

# The tutorial's figures on an Nvidia K520 GPU: seconds per epoch, how it words them, epochs run.
TUTORIAL_FIGURES: dict[str, tuple[float, str, int]] = {
    "tutorial": (300.0, "about", 20),
    "tutorial-large": (700.0, "at least", 50),
}
WARMUP = 3  # first batches pay for allocator growth and kernel selection; not timed


def time_preset(name: str, batches: int, device: str, base: Path) -> dict[str, Any]:
    """Time ``batches`` training batches of preset ``name`` after ``WARMUP`` untimed ones."""
    trainer = api.start_run(None, base / name, preset=name, progress_bar=False, overrides={"device": device})
    per_epoch = len(trainer.batches)
    iterator = trainer.batches.iterate(0)  # epoch 0's shuffled order, as fit would read it
    gather_s, step_s = [], []
    for i in range(min(WARMUP + batches, per_epoch)):
        begin = time.perf_counter()
        _, x, y = next(iterator)
        gathered = time.perf_counter()
        loss = trainer.train_step(x, y)
        float(loss)  # waits for a GPU to finish the step; costs nothing on a CPU
        done = time.perf_counter()
        if i >= WARMUP:
            gather_s.append(gathered - begin)
            step_s.append(done - gathered)
    if not step_s:
        raise SystemExit(f"{name}: an epoch has only {per_epoch} batches, none left after warm-up")
    # A batch costs its gather (windows cut from the text) plus its step; fit pays both.
    batch_s = [g + s for g, s in zip(gather_s, step_s, strict=True)]
    median = statistics.median(batch_s)
    k520, wording, epochs = TUTORIAL_FIGURES[name]
    quartiles = statistics.quantiles(batch_s, n=4) if len(batch_s) > 1 else [median] * 3
    return {
        "preset": name, "parameters": trainer.model.num_parameters(),
        "batch_size": trainer.config.batch_size, "batches_per_epoch": per_epoch,
        "timed_batches": len(batch_s), "median_batch_s": median,
        "batch_s_quartiles": [quartiles[0], quartiles[2]], "min_batch_s": min(batch_s),
        "median_gather_s": statistics.median(gather_s), "median_step_s": statistics.median(step_s),
        "epoch_s": median * per_epoch, "epochs": epochs, "run_min": median * per_epoch * epochs / 60,
        "k520_epoch_s": k520, "k520_wording": wording, "k520_over_here": k520 / (median * per_epoch),
        "device": str(trainer.device),
    }


def table(results: list[dict[str, Any]]) -> str:
    header = ["preset", "parameters", "batch", "batches/epoch", "median s/batch (gather ms)", "s/epoch",
              "epochs", "run min", "K520 s/epoch", "K520 run min", "K520 time / this machine"]
    rows = []
    for r in results:
        at_least = "≥ " if r["k520_wording"] == "at least" else "~"  # "at least 700 s": a lower bound
        rows.append([
            r["preset"], f"{r['parameters']:,}", r["batch_size"], f"{r['batches_per_epoch']:,}",
            f"{r['median_batch_s']:.4f} ({r['median_gather_s'] * 1000:.1f})", f"{r['epoch_s']:,.0f}",
            r["epochs"], f"{r['run_min']:,.1f}", f"{at_least}{r['k520_epoch_s']:g}",
            f"{at_least}{r['k520_epoch_s'] * r['epochs'] / 60:,.0f}", f"{at_least}{r['k520_over_here']:.2f}",
        ])
    return _report.markdown_table(header, rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--small", action="store_true", help="time only `tutorial` (default: both)")
    which.add_argument("--large", action="store_true", help="time only `tutorial-large` (default: both)")
    parser.add_argument("--batches", type=int, default=30,
                        help=f"timed batches per preset, after {WARMUP} warm-up ones (default 30)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    parser.add_argument("--no-write", action="store_true",
                        help="print only; do not touch docs/benchmarks.md or bench/results/")
    args = parser.parse_args(argv)
    if args.batches < 1:
        parser.error("--batches must be at least 1")
    names = ["tutorial"] if args.small else ["tutorial-large"] if args.large else list(TUTORIAL_FIGURES)

    info = _report.machine_info()
    print(_report.machine_line(info))
    results = []
    with tempfile.TemporaryDirectory(prefix="charlstm-bench-") as tmp:
        for name in names:
            print(f"timing {name}: {WARMUP} warm-up + {args.batches} batches ...", flush=True)
            results.append(time_preset(name, args.batches, args.device, Path(tmp)))

    notes = [
        f"Each preset's text prepared as a real run prepares it; {args.batches} batches of epoch 0 timed "
        f"after {WARMUP} warm-up ones on {results[0]['device']}. A batch's time is gathering its windows "
        "plus the trainer's train_step (forward, backward, Adam); s/epoch = median s/batch x batches/epoch.",
        "K520 figures are the tutorial's (Keras 2, Nvidia K520 GPU): about 300 s/epoch for the small "
        "network, at least 700 s/epoch for the larger one, so its ratio is a lower bound. A ratio above "
        "1 means this machine is faster.",
    ]
    text = table(results)
    print("\n" + text + "\n\n" + "\n".join(notes))
    if args.no_write:
        return
    markdown = _report.section_markdown("Seconds per epoch of the tutorial presets", info,
                                        [text, _report.bullets(notes)])
    data = {"machine": info, "settings": {"batches": args.batches, "warmup": WARMUP, "device": args.device},
            "results": results}
    _report.record("tutorial_epoch", markdown, data)


if __name__ == "__main__":
    main()
