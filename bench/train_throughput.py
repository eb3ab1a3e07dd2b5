"""Training throughput: charlstm's training step against a bare PyTorch loop and a large matmul.

For each shape, three things are timed in the same run, interleaved round by
round (their order rotates), so a machine that slows down slows all three:

- charlstm: a Trainer's ``train_step`` on real stream batches of the bundled
  text, fetched from ``trainer.batches`` as ``fit`` fetches them;
- bare: nn.Embedding + nn.LSTM(batch_first) + dropout + nn.Linear + cross-entropy +
  AdamW + clip_grad_norm_, with the LSTM state carried and detached between
  batches: the same work per step, so charlstm / bare measures the framework;
- matmul: an N x N @ N x N fp32 matmul, the machine's reachable GFLOP/s.

GFLOP/s counts 2 * 4H(I + H) flops per LSTM layer per character (I = E for the
first layer, H after) plus 2 * H * V for the head, x3 for forward and backward.

    python bench/train_throughput.py                                  # 4 shapes, CPU
    python bench/train_throughput.py --quick --no-write
    python bench/train_throughput.py --device cuda --precision bf16 --rounds 3 --steps 20 --no-write
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import _report
from charlstm.config.choices import Precision
from charlstm.data.prepare import prepare_corpus
from charlstm.data.sources import default_corpus_path
from charlstm.presets import PRESETS
from charlstm.training import session as api
from charlstm.training.trainer import Trainer

TARGET_VS_BARE = 0.95  # charlstm's chars/s over the bare loop's
TARGET_VS_MATMUL = 0.50  # 2x512's GFLOP/s over the matmul's
DEFAULT_MODEL, DEFAULT_TRAIN = PRESETS["default"].model, PRESETS["default"].train
SHAPES = {  # name -> (num_layers, hidden_size); embedding, seq_len, batch, dropout: the default preset's
    "default": (DEFAULT_MODEL.num_layers, DEFAULT_MODEL.hidden_size),
    "1x256": (1, 256), "2x512": (2, 512), "3x512": (3, 512),
}


@dataclass
class Shape:
    name: str
    num_layers: int
    hidden_size: int
    embedding_size: int
    vocab_size: int

    def flops_per_char(self) -> float:
        E, H, V = self.embedding_size, self.hidden_size, self.vocab_size
        lstm = sum(2 * 4 * H * ((E if layer == 0 else H) + H) for layer in range(self.num_layers))
        return 3.0 * (lstm + 2 * H * V)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class BareLoop:
    """The training step written out with plain PyTorch: the reference charlstm is held to."""

    def __init__(self, shape: Shape, device: torch.device, precision: str):
        drop, H, L = DEFAULT_MODEL.dropout, shape.hidden_size, shape.num_layers
        self.embedding = nn.Embedding(shape.vocab_size, shape.embedding_size).to(device)
        self.lstm = nn.LSTM(shape.embedding_size, H, L, batch_first=True, dropout=drop if L > 1 else 0.0)
        self.lstm.to(device)
        self.dropout = nn.Dropout(drop)
        self.head = nn.Linear(H, shape.vocab_size).to(device)
        self.params = [p for m in (self.embedding, self.lstm, self.head) for p in m.parameters()]
        c = DEFAULT_TRAIN
        self.optimizer = torch.optim.AdamW(self.params, lr=c.lr, betas=(0.9, c.beta2), eps=c.adam_eps,
                                           weight_decay=c.weight_decay)
        self.device, self.grad_clip, self.hidden = device, c.grad_clip, None
        self.bf16 = precision == Precision.BF16

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16
                    else contextlib.nullcontext())
        with autocast:
            out, hidden = self.lstm(self.embedding(x), self.hidden)  # (B, T, H)
            self.hidden = tuple(s.detach() for s in hidden)  # truncated BPTT, as charlstm
            logits = self.head(self.dropout(out))  # (B, T, V)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.optimizer.step()
        return loss.detach()


def matmul_seconds(size: int, device: torch.device, dtype: torch.dtype, repeats: int = 3) -> float:
    """Seconds per (size x size) @ (size x size) matmul: the best of ``repeats`` back to back."""
    a, b, out = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(3))
    torch.mm(a, b, out=out)  # warm-up: library initialisation, kernel choice
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        begin = time.perf_counter()
        torch.mm(a, b, out=out)
        sync(device)
        best = min(best, time.perf_counter() - begin)
    return best


def time_shape(shape: Shape, data_dir: Path, run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    trainer = api.start_run([data_dir], run_dir, preset="default", progress_bar=False, overrides={
        "num_layers": shape.num_layers, "hidden_size": shape.hidden_size, "device": args.device,
        "precision": args.precision})
    bare = BareLoop(shape, device, args.precision)
    batches = trainer.batches
    batch_list = [batches.batch(k) for k in range(len(batches))]  # the bare loop's batches, made once

    def stepping(step, owner: Trainer | BareLoop):
        """``run(n)``: n more steps through the batches in order, cycling, as epochs would."""
        done = [0]

        def run(n: int) -> None:
            for _ in range(n):
                k = done[0] % len(batches)
                if k == 0:
                    owner.hidden = None  # a new pass over the text starts from a zero state, as fit does
                step(k)
                done[0] += 1
        return run

    # charlstm reads its batch from the memmap every step, as fit does; bare gets them ready-made.
    loops = {"charlstm": stepping(lambda k: trainer.train_step(*batches.batch(k)), trainer),
             "bare": stepping(lambda k: bare.step(*batch_list[k]), bare)}
    for run in loops.values():
        run(args.warmup)  # allocator growth, kernel selection, cuDNN plans: not timed
    sync(device)
    seconds: dict[str, list[float]] = {"charlstm": [], "bare": [], "matmul": [], "matmul_bf16": []}
    order = ["charlstm", "bare", "matmul"]
    for r in range(args.rounds):
        for name in order[r % 3 :] + order[: r % 3]:  # rotate, so no loop always runs first
            if name == "matmul":
                seconds["matmul"].append(matmul_seconds(args.matmul_size, device, torch.float32))
                if args.precision == Precision.BF16:  # what bf16 autocast could reach, for reference
                    seconds["matmul_bf16"].append(matmul_seconds(args.matmul_size, device, torch.bfloat16))
                continue
            begin = time.perf_counter()
            loops[name](args.steps)
            sync(device)
            seconds[name].append(time.perf_counter() - begin)
    chars = args.steps * trainer.config.batch_size * trainer.config.seq_len
    result = {"shape": shape.__dict__, "parameters": trainer.model.num_parameters(),
              "flops_per_char": shape.flops_per_char(), "seconds": seconds}
    for name in ("charlstm", "bare"):
        result[f"{name}_chars_s"] = chars / statistics.median(seconds[name])
        result[f"{name}_gflops"] = result[f"{name}_chars_s"] * shape.flops_per_char() / 1e9
    for name in ("matmul", "matmul_bf16"):
        if seconds[name]:
            result[f"{name}_gflops"] = 2 * args.matmul_size**3 / statistics.median(seconds[name]) / 1e9
    return result


def summarise(results: list[dict[str, Any]], matmul: float, matmul_bf16: float | None) -> str:
    header = ["shape", "params", "charlstm chars/s", "bare chars/s", "charlstm / bare", "charlstm GFLOP/s",
              "bare GFLOP/s", "charlstm / matmul", "bare / matmul"]
    rows = [[r["shape"]["name"], f"{r['parameters']:,}", f"{r['charlstm_chars_s']:,.0f}",
             f"{r['bare_chars_s']:,.0f}", f"{r['charlstm_chars_s'] / r['bare_chars_s']:.3f}",
             f"{r['charlstm_gflops']:.1f}", f"{r['bare_gflops']:.1f}", f"{r['charlstm_gflops'] / matmul:.2f}",
             f"{r['bare_gflops'] / matmul:.2f}"] for r in results]
    rows.append(["matmul fp32", "", "", "", "", f"{matmul:.1f}", "", "1.00", ""])
    if matmul_bf16:
        rows.append(["matmul bf16", "", "", "", "", f"{matmul_bf16:.1f}", "", f"{matmul_bf16 / matmul:.2f}",
                     ""])
    return _report.markdown_table(header, rows)


def verdicts(results: list[dict[str, Any]], matmul: float) -> list[str]:
    worst = min(results, key=lambda r: r["charlstm_chars_s"] / r["bare_chars_s"])
    ratio = worst["charlstm_chars_s"] / worst["bare_chars_s"]
    lines = [f"Target: charlstm >= {TARGET_VS_BARE:.2f} x the bare loop's chars/s: lowest ratio {ratio:.3f} "
             f"({worst['shape']['name']}), {'meets' if ratio >= TARGET_VS_BARE else 'misses'} it."]
    for r in results:
        if r["shape"]["name"] == "2x512":
            share = r["charlstm_gflops"] / matmul
            lines.append(f"Target: 2x512 at >= {TARGET_VS_MATMUL:.0%} of the matmul's GFLOP/s: {share:.0%}, "
                         f"{'meets' if share >= TARGET_VS_MATMUL else 'misses'} it.")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", help=f"comma-separated, of {', '.join(SHAPES)} (default: all)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--precision", default="fp32", choices=list(Precision))
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per shape (default 5)")
    parser.add_argument("--steps", type=int, default=5, help="training steps per round (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per loop first (default 2)")
    parser.add_argument("--matmul-size", type=int, default=2048, help="N of the N x N matmul (default 2048)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 2 rounds of 1 step, 512 matmul; default and 1x256 unless --shapes")
    parser.add_argument("--markdown-out", type=Path, help="also write the section's markdown to this file")
    parser.add_argument("--no-write", action="store_true",
                        help="print only; do not touch docs/benchmarks.md or bench/results/")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.warmup, args.matmul_size = 2, 1, 1, 512
        args.shapes = args.shapes or "default,1x256"
    names = [s.strip() for s in (args.shapes or ",".join(SHAPES)).split(",") if s.strip()]
    if not names or any(n not in SHAPES for n in names):
        parser.error(f"--shapes takes names from {', '.join(SHAPES)}")
    if min(args.rounds, args.steps, args.matmul_size) < 1 or args.warmup < 0:
        parser.error("--rounds, --steps and --matmul-size must be positive, --warmup >= 0")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device (or is a CPU build)")

    results = []
    with tempfile.TemporaryDirectory(prefix="charlstm-throughput-") as tmp:
        data_dir = Path(tmp) / "data"  # prepared once, read in place by every shape's run
        data = prepare_corpus([default_corpus_path()], data_dir, val_fraction=DEFAULT_TRAIN.val_fraction,
                              progress_bar=False)
        for name in names:
            layers, hidden = SHAPES[name]
            shape = Shape(name, layers, hidden, DEFAULT_MODEL.embedding_size, len(data.vocab))
            print(f"timing {name} ...", flush=True)
            results.append(time_shape(shape, data_dir, Path(tmp) / name, args))
    matmul = statistics.median(r["matmul_gflops"] for r in results)
    matmul_bf16 = (statistics.median(r["matmul_bf16_gflops"] for r in results)
                   if args.precision == Precision.BF16 else None)

    notes = [f"Device {args.device}, precision {args.precision}; torch threads {torch.get_num_threads()}. "
             f"Embedding {DEFAULT_MODEL.embedding_size}, vocabulary {results[0]['shape']['vocab_size']}, "
             f"batch {DEFAULT_TRAIN.batch_size} x seq_len {DEFAULT_TRAIN.seq_len}, dropout "
             f"{DEFAULT_MODEL.dropout}, AdamW, gradient clipping: the `default` preset but for the shape.",
             f"Medians of {args.rounds} rounds of {args.steps} step(s) (after {args.warmup} warm-up ones), "
             "charlstm, bare and matmul interleaved in every round; matmul: fp32 "
             f"{args.matmul_size}x{args.matmul_size} @ {args.matmul_size}x{args.matmul_size}, best of 3 per "
             "round, median over all rounds of all shapes.",
             "GFLOP/s counts 3 x (sum over layers of 8H(I+H) + 2HV) flops per trained character."]
    if args.device.startswith("cuda"):  # TF32 lets fp32 work run on tensor cores: above the fp32 matmul
        notes.append(f"TF32 allowed: cuDNN (the LSTM) {torch.backends.cudnn.allow_tf32}, "
                     f"matmuls {torch.backends.cuda.matmul.allow_tf32}.")
    sections = [summarise(results, matmul, matmul_bf16), *verdicts(results, matmul)]
    print("\n" + "\n\n".join(["\n".join(notes), *sections]))
    info = _report.machine_info()
    markdown = _report.section_markdown(
        f"Training throughput (`bench/train_throughput.py`, {args.device}, {args.precision})", info,
        [_report.bullets(notes), *sections])
    if args.markdown_out:
        args.markdown_out.write_text(markdown + "\n", encoding="utf-8")
    if args.no_write:
        return
    # The CPU fp32 figures are the issue's; other runs get their own section rather than replace them.
    name = "train_throughput" + ("" if (args.device, args.precision) == ("cpu", "fp32")
                                 else f"-{args.device.replace(':', '')}-{args.precision}")
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    data = {"machine": info, "settings": settings, "matmul_gflops": matmul, "matmul_bf16_gflops": matmul_bf16,
            "shapes": results}
    _report.record(name, markdown, data)


if __name__ == "__main__":
    main()
