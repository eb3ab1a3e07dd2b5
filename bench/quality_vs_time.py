"""Held-out loss over training time: the `default` recipe against the Keras tutorial's network.

Both presets train on the first 90% of the bundled Alice text, lowercased, for
the same training-time budget, and are scored on the same last 10% every
``--interval`` seconds of training. The trainer's clock is replaced by one that
stops while the model is scored (by this script, or by the trainer's own
evaluations and checkpoints), so every run gets the same seconds of training
steps, however long its scoring takes.

    python bench/quality_vs_time.py                       # 5 minutes each
    python bench/quality_vs_time.py --budget 20 --interval 5 --no-write
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

import _report
from charlstm.cli import app as cli_module
from charlstm.errors import ConfigError
from charlstm.model.loss import EvalResult
from charlstm.model.runtime import seed_everything
from charlstm.training import session as api
from charlstm.training.events import ReportEnd, ReportStart, StepEnd
from charlstm.training.trainer import Trainer

TARGET_LOSS = 1.40  # the target for `default`, lowercase: held-out nats/char after 5 minutes
TARGET_BUDGET = 300.0
SPLIT = {"val_fraction": 0.1}  # the tutorial preset holds nothing out; the same last 10% for all
RUNS = {  # label -> (preset, overrides); the first two must read the same text
    "default": ("default", {"lowercase": True, **SPLIT}),
    "tutorial": ("tutorial", SPLIT),  # keeps checkpoint_metric train_loss and eval_every 0
    "default-cased": ("default", SPLIT),  # --cased: its own text, so its own val split
}


def parse_duration(text: str) -> float:
    """Seconds from "300", "90s", "5m" or "1h30m", as the CLI's --time-budget reads them."""
    try:
        return cli_module.parse_duration(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class PausableClock:
    """perf_counter minus the time spent inside ``paused()``; the trainer reads it for its budget."""

    def __init__(self) -> None:
        self.excluded = 0.0
        self._since = 0.0

    def __call__(self) -> float:
        return time.perf_counter() - self.excluded

    def pause(self) -> None:
        self._since = time.perf_counter()

    def resume(self) -> float:
        """Stop the pause; how long it lasted."""
        lasted = time.perf_counter() - self._since
        self.excluded += lasted
        return lasted

    @contextmanager
    def paused(self):
        self.pause()
        try:
            yield
        finally:
            self.resume()


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so it is charged to the training that queued it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Recorder:
    """Subscribes to a trainer's events to score it every ``interval`` training seconds."""

    def __init__(self, trainer: Trainer, interval: float, max_windows: int):
        self.trainer, self.interval, self.max_windows = trainer, interval, max_windows
        self.val_ids = np.asarray(trainer.val_ids)  # read the memmap once, not at every scoring
        self.clock = trainer.clock = PausableClock()
        self.points: list[dict[str, Any]] = []
        self.start = 0.0
        self.next_due = interval
        self.last_step_s = 0.0
        self.read_chars = self.targets = 0
        self.report_s = 0.0  # the trainer's own evaluations and checkpoints, kept off the budget
        self.scoring_s = 0.0
        trainer.callbacks.on(StepEnd, self.after_step)
        trainer.callbacks.on(ReportStart, self.report_start)
        trainer.callbacks.on(ReportEnd, self.report_end)

    def after_step(self, event: StepEnd) -> None:
        self.read_chars += event.inputs.numel()
        self.targets += event.targets.numel()
        self.last_step_s = self.clock() - self.start
        if self.last_step_s >= self.next_due:
            sync(self.trainer.device)
            self.last_step_s = self.clock() - self.start
            nominal = self.interval * math.floor(self.last_step_s / self.interval)
            self.record(nominal, self.last_step_s, event.step)
            self.next_due = nominal + self.interval  # one point even if a step spans several intervals

    def report_start(self, event: ReportStart) -> None:
        sync(self.trainer.device)
        self.clock.pause()

    def report_end(self, event: ReportEnd) -> None:
        self.report_s += self.clock.resume()

    def score(self) -> EvalResult:
        t = self.trainer
        # A window model re-reads 100 characters per prediction: score a fixed, evenly spaced subset.
        cap = None if t.framing.carries_state else self.max_windows
        return t.framing.evaluate(t.model, self.val_ids, device=t.device, max_chars=cap)

    def record(self, at: float | str, train_s: float, steps: int) -> None:
        begin = time.perf_counter()
        with self.clock.paused():
            result = self.score()
        self.scoring_s += time.perf_counter() - begin
        self.points.append({"at": at, "train_s": round(train_s, 2), "steps": steps, "loss": result.loss,
                            "bits_per_char": result.bits_per_char, "scored": result.characters})

    def run(self) -> dict[str, Any]:
        t = self.trainer
        seed_everything(t.config.seed)  # each run's dropout draws do not depend on the run order
        self.record(0.0, 0.0, 0)
        self.start = self.clock()
        result = t.fit()
        if self.points[-1]["steps"] != t.progress.step:
            self.record("end", self.last_step_s, t.progress.step)
        best = min(self.points, key=lambda p: p["loss"])
        seconds = max(self.last_step_s, 1e-9)
        return {
            "final": self.points[-1], "best": best, "stop_reason": result.stop_reason,
            "steps": t.progress.step, "train_s": round(self.last_step_s, 2),
            "chars_per_s": self.read_chars / seconds, "targets_per_s": self.targets / seconds,
            "trainer_reports_s": round(self.report_s, 2), "scoring_s": round(self.scoring_s, 2),
            "points": self.points,
            "val_chars": len(self.val_ids),
        }


def curve_table(results: dict[str, dict[str, Any]]) -> str:
    """One row per scoring time; the runs side by side (loss nats/char, bits/char, steps)."""
    keys: list[float | str] = sorted({p["at"] for r in results.values() for p in r["points"]
                                      if p["at"] != "end"})
    if any(p["at"] == "end" for r in results.values() for p in r["points"]):
        keys.append("end")
    header = ["train s"] + [f"{name} {col}" for name in results for col in ("loss", "bits/char", "steps")]
    rows = []
    for key in keys:
        by_run = [next((p for p in r["points"] if p["at"] == key), None) for r in results.values()]
        label = f"{key:g}" if key != "end" else "end (" + ", ".join(
            f"{p['train_s']:g}" for p in by_run if p) + ")"
        rows.append([label] + [cell for p in by_run for cell in (
            [f"{p['loss']:.4f}", f"{p['bits_per_char']:.3f}", p["steps"]] if p else ["-"] * 3)])
    return _report.markdown_table(header, rows)


def summary_table(results: dict[str, dict[str, Any]]) -> str:
    header = ["run", "final loss", "final bits/char", "best loss (at s)", "steps", "train s",
              "chars read/s", "targets/s", "scoring s", "trainer's evals s", "stopped by"]
    rows = [[name, f"{r['final']['loss']:.4f}", f"{r['final']['bits_per_char']:.3f}",
             f"{r['best']['loss']:.4f} ({r['best']['train_s']:g})", r["steps"], f"{r['train_s']:g}",
             f"{r['chars_per_s']:,.0f}", f"{r['targets_per_s']:,.0f}", f"{r['scoring_s']:g}",
             f"{r['trainer_reports_s']:g}", r["stop_reason"]] for name, r in results.items()]
    return _report.markdown_table(header, rows)


def check_same_split(a: Trainer, b: Trainer) -> str:
    """Both runs must score the same characters, or their losses cannot be compared."""
    same_vocab = a.data.vocab == b.data.vocab
    same_val = same_vocab and np.array_equal(a.val_ids, b.val_ids)
    same_train = same_vocab and np.array_equal(a.data.split("train"), b.data.split("train"))
    if not (same_val and same_train):
        sys.exit("default and tutorial do not read the same text split: their losses are not comparable")
    return (f"Checked before timing: `default` and `tutorial` hold out the identical last 10% "
            f"({len(a.val_ids):,} ids, same {len(a.data.vocab)}-symbol vocabulary) and train on the "
            f"same first 90% ({len(a.data.split('train')):,} ids).")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=parse_duration, default=300.0,
                        help="training time per run: seconds, or e.g. 90s, 5m (default 300)")
    parser.add_argument("--interval", type=parse_duration, default=30.0,
                        help="training seconds between scorings (default 30)")
    parser.add_argument("--windows", type=int, default=2000,
                        help="evenly spaced held-out windows scored for the tutorial model (default 2000)")
    parser.add_argument("--cased", action="store_true",
                        help="also train `default` on the cased text (scored on its own cased split)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep the run folders in DIR")
    parser.add_argument("--no-write", action="store_true",
                        help="print only; do not touch docs/benchmarks.md or bench/results/")
    args = parser.parse_args(argv)
    if args.windows < 1:
        parser.error("--windows must be at least 1")
    labels = ["default", "tutorial"] + (["default-cased"] if args.cased else [])

    with tempfile.TemporaryDirectory(prefix="charlstm-bench-") as tmp:
        base = args.keep or Path(tmp)
        trainers, used = {}, {}
        for label in labels:
            preset, overrides = RUNS[label]
            used[label] = {**overrides, "time_budget": args.budget, "device": args.device}
            if label == "tutorial":  # its own evaluations (end of epoch, of run) read the same windows
                used[label]["eval_max_chars"] = args.windows
            trainers[label] = api.start_run(None, base / label, preset=preset, overrides=used[label],
                                            progress_bar=False)
        split_note = check_same_split(trainers["default"], trainers["tutorial"])
        print(split_note)
        results: dict[str, dict[str, Any]] = {}
        for label, trainer in trainers.items():
            print(f"training {label} for {args.budget:g} s of training time ...", flush=True)
            results[label] = Recorder(trainer, args.interval, args.windows).run()
            if results[label]["stop_reason"] == "interrupted":
                sys.exit("interrupted: nothing written")

    main_runs = {k: results[k] for k in ("default", "tutorial")}
    notes = [
        f"Budget {args.budget:g} s of training steps per run, scored every {args.interval:g} s; scoring, "
        "and the trainer's own evaluations and checkpoints, are kept off the budget by pausing its clock "
        "(their wall-clock seconds are listed as scoring s and trainer's evals s).",
        split_note,
        f"`default` is scored on every held-out character ({main_runs['default']['val_chars']:,}) with "
        f"its state carried; `tutorial` on the same {main_runs['tutorial']['points'][0]['scored']:,} evenly "
        "spaced held-out windows every time (100 characters of context each, next character scored).",
        "Loss is cross-entropy in nats/char; bits/char = loss / ln 2. Chars read/s counts every input "
        "character; targets/s counts predictions trained on (every position for `default`, one per window "
        "for `tutorial`).",
    ]
    final = main_runs["default"]["final"]["loss"]
    verdict = "meets" if final < TARGET_LOSS else "misses"
    target = (f"Target (issue): `default`, lowercase, below {TARGET_LOSS:.2f} nats/char after "
              f"{TARGET_BUDGET / 60:g} minutes: {final:.4f}, {verdict} it")
    target += "." if args.budget == TARGET_BUDGET else f" (but this run's budget is {args.budget:g} s)."
    sections = [curve_table(main_runs), summary_table(main_runs), target]
    if args.cased:
        sections += ["`default` on the cased text (a different text, not comparable with the rows above):",
                     curve_table({"default-cased": results["default-cased"]}),
                     summary_table({"default-cased": results["default-cased"]})]
    print("\n" + "\n\n".join(["\n".join(notes), *sections]))

    if args.no_write:
        return
    info = _report.machine_info()
    markdown = _report.section_markdown("Held-out loss over training time: `default` vs `tutorial`", info,
                                        [_report.bullets(notes), *sections])
    data = {"machine": info, "settings": {"budget_s": args.budget, "interval_s": args.interval,
                                          "windows": args.windows, "device": args.device},
            "runs": {k: {"preset": RUNS[k][0], "overrides": used[k], **r} for k, r in results.items()}}
    _report.record("quality_vs_time", markdown, data)


if __name__ == "__main__":
    main()
