"""Peak memory and speed of `charlstm prepare` and `charlstm train` as the corpus grows.

For each size a corpus is generated (lines of the bundled Alice body drawn at
random with NumPy: deterministic, ASCII, no Project Gutenberg markers, so
cleaning keeps every byte), then both commands run as separate processes under
GNU time, which reports their peak resident set size (RSS):

    prepare CORPUS --out DATA --no-progress
    train DATA --out RUN --preset default --max-steps 20 --no-progress

`train` reads DATA in place and evaluates as it does by default (every 200
steps and at the end, on the validation split's first 100,000 characters), so
neither its memory nor its time should grow with the corpus. The same 20 steps
on the bundled Alice text are the reference: a large corpus should cost about
as much. Sizes are decimal: 1 MB = 10^6 bytes. Needs GNU time (Debian:
`apt-get install time`).

    python bench/corpus_scale.py                        # 10MB, 100MB, 1GB (about 2 GB of disk)
    python bench/corpus_scale.py --sizes 5MB --train-steps 5 --no-write
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import _report
from charlstm.data.sources import default_corpus_path, load_text

GNU_TIME = "/usr/bin/time"
TRAIN_RSS_TARGET = 2e9  # bytes: the "train peak RSS under 2 GB at 1 GB of text"
TRAIN_TIME_GROWTH = 0.30  # train wall time may grow by less than this from 10 MB to 1 GB
PREPARE_TARGET = 50.0  # MB/s
BLOCK_BYTES = 16 << 20  # the corpus is written in blocks of this size: memory stays small
UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9}


def parse_size(text: str) -> int:
    """Bytes from "10MB", "1GB", "500KB" or a plain number of bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([KMG]?B?)\s*", text.upper())
    if not match or float(match[1]) <= 0:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 10MB or 1GB)")
    return int(float(match[1]) * UNITS[match[2]])


def size_label(n: int) -> str:
    for unit in ("GB", "MB", "KB"):
        if n >= UNITS[unit] and n % UNITS[unit] == 0:
            return f"{n // UNITS[unit]} {unit}"
    return f"{n:,} B"


def write_corpus(path: Path, size: int, seed: int) -> int:
    """Write about ``size`` bytes of Alice lines in random order; returns the bytes written.

    Whole lines, drawn with replacement, joined in C by bytes.join: about 1 GB in
    seconds. The file ends on a line break, just under ``size``.
    """
    body = load_text([default_corpus_path()])  # cleaned: the Gutenberg header and footer are gone
    lines = np.array([(line + "\n").encode("ascii") for line in body.split("\n")], dtype=object)
    per_block = max(1, BLOCK_BYTES // int(np.mean([len(b) for b in lines])))
    rng = np.random.default_rng(seed)
    written = 0
    with open(path, "wb") as f:
        while written < size:
            block = b"".join(lines[rng.integers(0, len(lines), per_block)].tolist())
            if written + len(block) > size:
                block = block[: block.rfind(b"\n", 0, size - written) + 1]
                if not block:
                    break
            f.write(block)
            written += len(block)
    return written


def parse_gnu_time(report: str) -> dict[str, float]:
    """Peak RSS (bytes) and wall seconds from ``time -v``'s report."""
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", report)
    wall = re.search(r"Elapsed \(wall clock\) time .*?: (?:(\d+):)?(\d+):(\d+(?:\.\d+)?)", report)
    if not rss or not wall:
        raise SystemExit(f"could not read GNU time's report:\n{report}")
    hours, minutes, seconds = int(wall[1] or 0), int(wall[2]), float(wall[3])
    return {"peak_rss": int(rss[1]) * 1024, "wall_s": hours * 3600 + minutes * 60 + seconds}


def timed(args: list[str], workdir: Path, name: str) -> dict[str, float]:
    """Run ``python -m charlstm ARGS`` under GNU time; exit with its output if it fails."""
    report = workdir / f"{name}.time"
    cmd = [GNU_TIME, "-v", "-o", str(report), sys.executable, "-m", "charlstm", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return parse_gnu_time(report.read_text(encoding="utf-8"))


def train_args(data: Path, run: Path, steps: int) -> list[str]:
    """A user's short run: default evaluations, the ``default`` preset so every size trains one model."""
    return ["train", str(data), "--out", str(run), "--preset", "default", "--max-steps", str(steps),
            "--no-progress"]


def measure(size: int, workdir: Path, seed: int, train_steps: int, keep: bool) -> dict[str, Any]:
    label = size_label(size).replace(" ", "")
    corpus, data, run = workdir / f"corpus-{label}.txt", workdir / f"data-{label}", workdir / f"run-{label}"
    print(f"{size_label(size)}: writing the corpus ...", flush=True)
    nbytes = write_corpus(corpus, size, seed)
    print(f"{size_label(size)}: prepare ...", flush=True)
    prep = timed(["prepare", str(corpus), "--out", str(data), "--no-progress"], workdir, f"prepare-{label}")
    print(f"{size_label(size)}: train {train_steps} steps ...", flush=True)
    train = timed(train_args(data, run, train_steps), workdir, f"train-{label}")
    if not keep:  # the next size needs the disk
        corpus.unlink()
        shutil.rmtree(data)
        shutil.rmtree(run)
    return {"size": size, "bytes": nbytes, "prepare": prep, "train": train}


def table(rows: list[dict[str, Any]], startup: dict[str, float], alice: dict[str, float]) -> str:
    header = ["corpus", "prepare s", "prepare MB/s", "MB/s net of start-up", "prepare peak RSS MB",
              "train s", "train peak RSS MB"]
    body = [["start-up only (`prepare --help`, fastest of 3)", f"{startup['wall_s']:.2f}", "", "",
             f"{startup['peak_rss'] / 1e6:,.0f}", "", ""],
            ["bundled Alice (0.15 MB), trained from the text", "", "", "", "", f"{alice['wall_s']:.2f}",
             f"{alice['peak_rss'] / 1e6:,.0f}"]]
    for r in rows:
        prep, train = r["prepare"], r["train"]
        net = prep["wall_s"] - startup["wall_s"]
        # Below half a second the difference is mostly noise in the start-up time.
        net_rate = f"{r['bytes'] / 1e6 / net:.1f}" if net >= 0.5 else "-"
        body.append([f"{r['bytes'] / 1e6:,.0f} MB", f"{prep['wall_s']:.2f}",
                     f"{r['bytes'] / 1e6 / prep['wall_s']:.1f}", net_rate,
                     f"{prep['peak_rss'] / 1e6:,.0f}", f"{train['wall_s']:.2f}",
                     f"{train['peak_rss'] / 1e6:,.0f}"])
    return _report.markdown_table(header, body)


def verdicts(rows: list[dict[str, Any]], alice: dict[str, float]) -> list[str]:
    largest = max(rows, key=lambda r: r["bytes"])
    rss, speed = largest["train"]["peak_rss"], largest["bytes"] / 1e6 / largest["prepare"]["wall_s"]
    at = f"at {largest['bytes'] / 1e6:,.0f} MB"
    full = " (the target is stated at 1 GB)" if largest["size"] < 10**9 else ""
    lines = [f"Target: train peak RSS < {TRAIN_RSS_TARGET / 1e9:g} GB at 1 GB of text: {rss / 1e6:,.0f} MB "
             f"{at}, {'meets' if rss < TRAIN_RSS_TARGET else 'misses'} it{full}.",
             f"Target: prepare >= {PREPARE_TARGET:g} MB/s: {speed:.1f} MB/s {at} (start-up included), "
             f"{'meets' if speed >= PREPARE_TARGET else 'misses'} it."]
    if len(rows) > 1:
        smallest = min(rows, key=lambda r: r["bytes"])
        growth = {k: (largest[k]["peak_rss"] - smallest[k]["peak_rss"]) / 1e6 for k in ("prepare", "train")}
        lines.append(f"Peak RSS growth from {smallest['bytes'] / 1e6:,.0f} MB to "
                     f"{largest['bytes'] / 1e6:,.0f} MB of text: prepare {growth['prepare']:+,.0f} MB, "
                     f"train {growth['train']:+,.0f} MB.")
        wall = largest["train"]["wall_s"] / smallest["train"]["wall_s"] - 1
        lines.append(f"Target: train wall time grows < {TRAIN_TIME_GROWTH:.0%} from 10 MB to 1 GB: "
                     f"{wall:+.1%} from {smallest['bytes'] / 1e6:,.0f} MB to "
                     f"{largest['bytes'] / 1e6:,.0f} MB, "
                     f"{'meets' if wall < TRAIN_TIME_GROWTH else 'misses'} it{full}; the bundled Alice text "
                     f"takes {alice['wall_s']:.1f} s.")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10MB,100MB,1GB",
                        help="comma-separated corpus sizes (default 10MB,100MB,1GB)")
    parser.add_argument("--train-steps", type=int, default=20, help="training steps per size (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated text (default 0)")
    parser.add_argument("--workdir", type=Path, help="folder for corpora and runs (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the corpora, data and runs")
    parser.add_argument("--no-write", action="store_true",
                        help="print only; do not touch docs/benchmarks.md or bench/results/")
    args = parser.parse_args(argv)
    try:
        sizes = sorted({parse_size(s) for s in args.sizes.split(",") if s.strip()})
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if not sizes or args.train_steps < 1:
        parser.error("give at least one size and --train-steps >= 1")
    if not Path(GNU_TIME).is_file():
        sys.exit(f"{GNU_TIME} (GNU time) is missing; it measures peak memory. Install it with "
                 "`apt-get install time` (Debian/Ubuntu) or your system's `time` package.")

    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="charlstm-scale-", dir=args.workdir))
    # One size on disk at a time (unless --keep): its corpus, as many one-byte ids, a run, slack.
    need = (sum(sizes) if args.keep else max(sizes)) * 2 + 300e6
    free = shutil.disk_usage(workdir).free
    if free < need:
        shutil.rmtree(workdir)
        sys.exit(f"{workdir.parent}: {free / 1e9:.1f} GB free, {need / 1e9:.1f} GB needed; "
                 "point --workdir at a roomier disk or choose smaller --sizes")
    try:
        # Start-up (Python, torch import) is a fixed cost: the fastest of three is the least noisy.
        startup = min((timed(["prepare", "--help"], workdir, "startup") for _ in range(3)),
                      key=lambda t: t["wall_s"])
        print("bundled Alice: train ...", flush=True)
        alice = timed(train_args(default_corpus_path(), workdir / "run-alice", args.train_steps), workdir,
                      "train-alice")
        rows = [measure(size, workdir, args.seed, args.train_steps, args.keep) for size in sizes]
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.keep:
        print(f"kept {workdir}")

    notes = [f"Corpora: lines of the bundled Alice body drawn at random (seed {args.seed}), ASCII, "
             "no Gutenberg markers. Each command runs in its own process under `/usr/bin/time -v`; "
             "peak RSS is its maximum resident set size, seconds its wall clock, start-up (Python, "
             "torch import) included. MB = 10^6 bytes.",
             f"train: `default` preset, {args.train_steps} steps on the prepared folder, with the default "
             "evaluations (every 200 steps and at the end, each on the validation split's first 100,000 "
             "characters)."]
    result = [table(rows, startup, alice), *verdicts(rows, alice)]
    print("\n" + "\n\n".join(["\n".join(notes), *result]))
    if args.no_write:
        return
    info = _report.machine_info()
    markdown = _report.section_markdown(
        "Corpus size: peak memory of prepare and train (`bench/corpus_scale.py`)", info,
        [_report.bullets(notes), *result])
    data = {"machine": info, "settings": {"sizes": sizes, "train_steps": args.train_steps, "seed": args.seed},
            "startup": startup, "alice": alice, "runs": rows}
    _report.record("corpus_scale", markdown, data)


if __name__ == "__main__":
    main()
