"""Generation speed: charlstm's stateful sampler against the window method and a plain loop.

Three ways to sample from the same model (random weights: speed does not depend
on them), at batch 1 and batch 64, interleaved round by round (their order
rotates), so a machine that slows down slows all three:

- stateful: ``continue_ids`` with stream framing, prompt read once, then one step per
  character through the LSTMStepper;
- window: ``continue_ids`` with window framing with seq_len 100, the Keras tutorial's
  method: the whole window is re-run for every character (fewer characters: it is slow);
- plain: nn.LSTMCell per layer (weights copied from the model's nn.LSTM) +
  embedding + linear + softmax + torch.multinomial per step, the loop one writes
  first; the prompt is read once by the model's nn.LSTM, as stateful does.

No method reads anything back per step: ids are collected and stacked at the end.
Characters per second count every sample: batch x length / seconds.

    python bench/generate_speed.py
    python bench/generate_speed.py --length 200 --window-length 10 --rounds 2 --no-write
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import _report
from charlstm.config.model import ModelConfig
from charlstm.config.sample import SampleConfig
from charlstm.framing import StreamFraming, WindowFraming
from charlstm.generation.generators import continue_ids
from charlstm.generation.sampling import make_generator
from charlstm.model.network import CharLSTM

WINDOW = 100  # the tutorial's seq_len
TEMPERATURE = 0.8
VOCAB = 70
TARGET_VS_WINDOW, TARGET_VS_PLAIN, TARGET_BATCH64 = 10.0, 2.5, 100_000.0


class PlainLoop:
    """Per-step sampling as first written: LSTMCells, softmax, multinomial; same weights as ``model``."""

    def __init__(self, model: CharLSTM):
        self.model = model
        rnn, H = model.rnn, model.config.hidden_size
        self.cells = []
        for layer in range(model.config.num_layers):
            cell = nn.LSTMCell(rnn.input_size if layer == 0 else H, H)
            with torch.no_grad():
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(cell, name).copy_(getattr(rnn, f"{name}_l{layer}"))
            self.cells.append(cell.eval())

    @torch.no_grad()
    def prompt_state(self, prompt: torch.Tensor, batch: int) -> tuple[torch.Tensor, list, list]:
        """Logits (B, V) after the prompt, and per-layer h, c lists of (B, H)."""
        logits, (h, c) = self.model(prompt[None, :])  # read once, batch 1
        return (logits[:, -1].expand(batch, -1), [s.expand(batch, -1).contiguous() for s in h],
                [s.expand(batch, -1).contiguous() for s in c])

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, batch: int, length: int, gen: torch.Generator) -> torch.Tensor:
        logits, h, c = self.prompt_state(prompt, batch)
        out = []
        for _ in range(length):
            probs = F.softmax(logits / TEMPERATURE, dim=-1)
            ids = torch.multinomial(probs, 1, generator=gen).squeeze(1)  # (B,)
            out.append(ids)
            x = self.model.embedding(ids)
            for layer, cell in enumerate(self.cells):
                h[layer], c[layer] = cell(x, (h[layer], c[layer]))
                x = h[layer]
            logits = self.model.head(x)
        return torch.stack(out, 1)  # (B, length)


def check_same_model(model: CharLSTM, plain: PlainLoop, prompt: torch.Tensor) -> None:
    """The plain loop must compute the model's own logits, or the comparison means nothing."""
    with torch.no_grad():
        expected, _ = model(prompt[None, :])  # (1, P, V)
        _, h, c = plain.prompt_state(prompt[:-1], 1)
        x = model.embedding(prompt[-1:])
        for layer, cell in enumerate(plain.cells):
            x, _ = cell(x, (h[layer], c[layer]))
        got = model.head(x)
    if not torch.allclose(got, expected[:, -1], atol=1e-5):
        raise SystemExit("the plain loop's LSTMCells do not reproduce the model: benchmark is broken")


def make_methods(model: CharLSTM, prompt: torch.Tensor):
    plain = PlainLoop(model)
    check_same_model(model, plain, prompt)

    def stateful(batch: int, length: int, gen: torch.Generator) -> torch.Tensor:
        config = SampleConfig(length=length, num_samples=batch, temperature=TEMPERATURE)
        return torch.stack(list(continue_ids(model, StreamFraming(1), prompt, config, gen)), 1)

    def window(batch: int, length: int, gen: torch.Generator) -> torch.Tensor:
        config = SampleConfig(length=length, num_samples=batch, temperature=TEMPERATURE)
        return torch.stack(list(continue_ids(model, WindowFraming(WINDOW), prompt, config, gen)), 1)

    def plain_loop(batch: int, length: int, gen: torch.Generator) -> torch.Tensor:
        return plain.generate(prompt, batch, length, gen)

    return {"stateful": stateful, "window": window, "plain": plain_loop}


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=VOCAB, hidden_size=args.hidden_size, num_layers=args.num_layers)
    model = CharLSTM(config).eval()
    prompt = torch.randint(0, VOCAB, (WINDOW,))  # a full window, so every method starts alike
    methods = make_methods(model, prompt)
    lengths = {"stateful": args.length, "window": args.window_length, "plain": args.length}
    gen, _ = make_generator(0, torch.device("cpu"))
    for batch in args.batches:  # warm-up: first calls pay for allocation and kernel choice
        for fn in methods.values():
            fn(batch, 5, gen)
    seconds: dict[str, dict[int, list[float]]] = {m: {b: [] for b in args.batches} for m in methods}
    names = list(methods)
    for r in range(args.rounds):
        for batch in args.batches:
            for name in names[r % 3 :] + names[: r % 3]:
                begin = time.perf_counter()
                ids = methods[name](batch, lengths[name], gen)
                seconds[name][batch].append(time.perf_counter() - begin)
                if ids.shape != (batch, lengths[name]):  # a broken method, not a timing
                    raise SystemExit(f"{name} returned {tuple(ids.shape)}, not ({batch}, {lengths[name]})")
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    chars_s = {m: {b: b * lengths[m] / statistics.median(s) for b, s in per.items()}
               for m, per in seconds.items()}
    return {"parameters": model.num_parameters(), "lengths": lengths, "seconds": seconds, "chars_s": chars_s}


def table(result: dict[str, Any], batches: list[int]) -> str:
    chars_s = result["chars_s"]
    header = ["method", "characters"] + [f"batch {b} chars/s" for b in batches] + [
        f"stateful / it, batch {b}" for b in batches]
    rows = [[name, f"{result['lengths'][name]:,} per sample"]
            + [f"{chars_s[name][b]:,.0f}" for b in batches]
            + [f"{chars_s['stateful'][b] / chars_s[name][b]:.1f}x" for b in batches] for name in chars_s]
    return _report.markdown_table(header, rows)


def verdicts(result: dict[str, Any], batches: list[int]) -> list[str]:
    chars_s, lines = result["chars_s"], []
    if 1 in batches:
        for other, target in (("window", TARGET_VS_WINDOW), ("plain", TARGET_VS_PLAIN)):
            ratio = chars_s["stateful"][1] / chars_s[other][1]
            lines.append(f"Target: stateful >= {target:g}x {other} at batch 1: {ratio:.1f}x, "
                         f"{'meets' if ratio >= target else 'misses'} it.")
    if 64 in batches:
        rate = chars_s["stateful"][64]
        lines.append(f"Target: stateful >= {TARGET_BATCH64:,.0f} chars/s at batch 64: {rate:,.0f}, "
                     f"{'meets' if rate >= TARGET_BATCH64 else 'misses'} it.")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--num-layers", type=int, default=1)
    parser.add_argument("--length", type=int, default=4000,
                        help="characters per sample for stateful and plain (default 4000)")
    parser.add_argument("--window-length", type=int, default=50,
                        help="characters per sample for the window method (default 50)")
    parser.add_argument("--batches", default="1,64", help="comma-separated batch sizes (default 1,64)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--threads", type=int,
                        help="torch threads (default: torch's own choice, what a user gets)")
    parser.add_argument("--no-write", action="store_true",
                        help="print only; do not touch docs/benchmarks.md or bench/results/")
    args = parser.parse_args(argv)
    try:
        args.batches = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError:
        parser.error("--batches takes comma-separated integers")
    sizes = [args.length, args.window_length, args.rounds, args.hidden_size, args.num_layers, *args.batches]
    if min(sizes) < 1:
        parser.error("lengths, rounds, sizes and batches must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    print(f"torch threads: {threads}", flush=True)

    result = run(args)
    notes = [f"Model: {args.num_layers} x LSTM({args.hidden_size}), embedding "
             f"{ModelConfig.embedding_size}, vocabulary {VOCAB}, {result['parameters']:,} parameters, "
             f"random weights; temperature {TEMPERATURE}; prompt {WINDOW} ids; torch threads {threads}.",
             f"Medians of {args.rounds} rounds, methods interleaved and their order rotated in each round; "
             "chars/s = batch x characters / seconds, prompt reading included."]
    sections = [table(result, args.batches), *verdicts(result, args.batches)]
    print("\n" + "\n\n".join(["\n".join(notes), *sections]))
    if args.no_write:
        return
    info = _report.machine_info()
    markdown = _report.section_markdown("Generation speed (`bench/generate_speed.py`)", info,
                                        [_report.bullets(notes), *sections])
    settings = {k: getattr(args, k) for k in ("hidden_size", "num_layers", "length", "window_length",
                                              "batches", "rounds", "threads")}
    data = {"machine": info, "settings": settings, **result}
    _report.record("generate_speed", markdown, data)


if __name__ == "__main__":
    main()
