"""Load on `charlstm serve`: batched against per-request generation, at 1, 16 and 64 streams.

For each number of streams K, two servers are started in turn, each its own process (so its
memory is measured apart from the clients'): the batched one (every live stream of the model
stepped together) and `--no-batching` (a thread per generation, the path before batching).
K client threads each send streams back to back over one keep-alive connection for the same
counted time, after an uncounted warm-up; the server has K slots (`--max-concurrent K`).
Printed per run: characters/s over all streams, time to first character p50 / p99 (from
sending the request to the first text event), errors and the server's resident memory. Then,
unless `--soak 0`, one longer run of 16 batched streams shows whether memory grows.

    python bench/serve_load.py                          # 1, 16, 64 streams x 30 s each, 5-minute soak
    python bench/serve_load.py --streams 16 --duration 10 --soak 0 --no-write
    python bench/serve_load.py --run runs/alice --device cuda --streams 1,64 --soak 0   # a GPU: 64 >= 30x 1
    python bench/serve_load.py --streams 16 --soak 0 --samplers default,min-p,dry,min-p+dry

``--samplers`` runs each setting of the sampler in turn (min-p 0.05, the repetition control at
dry_multiplier 0.8, both), recorded as a section of its own with each one's speed against the
default sampler's on the same path.

Without --run, a model of the `default` preset's size is trained here for a few steps: serving
cost depends on the model's size, not on how well it has learnt.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import _report
from charlstm.training import session as api

PROMPT = "Alice was beginning to get very tired of sitting by her sister on the bank, "
SAMPLERS = {"default": {}, "min-p": {"min_p": 0.05}, "dry": {"dry_multiplier": 0.8},
            "min-p+dry": {"min_p": 0.05, "dry_multiplier": 0.8}}


def parse_duration(text: str) -> float:
    """Seconds from "300", "90s", "5m" or "1.5h"."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([smh]?)\s*", text.lower())
    if not match or float(match[1]) <= 0:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 300, 90s or 5m)")
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[match[2]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """A process's resident memory (VmRSS) or its peak (VmHWM), in KiB, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


def start_server(run: Path, port: int, slots: int, log_path: Path, batching: bool,
                 device: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "charlstm", "-q", "serve", str(run), "--port", str(port),
               "--max-concurrent", str(slots), "--device", device,
               "--batching" if batching else "--no-batching"]
    server = subprocess.Popen(command, stdout=log_path.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited with {server.returncode}:\n{log_path.read_text()}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    sys.exit("the server did not answer /healthz within 120 s")


class Client(threading.Thread):
    """Requests back to back on one keep-alive connection until ``stop_at``."""

    def __init__(self, port: int, mode: str, body: dict[str, Any], count_from: float, stop_at: float,
                 index: int):
        super().__init__(daemon=True)
        self.port, self.body, self.count_from, self.stop_at = port, body, count_from, stop_at
        self.stream_first = mode == "stream" or (mode == "mixed" and index % 2 == 0)
        self.mode = mode
        self.records: list[dict[str, Any]] = []
        self.arrivals: list[tuple[float, int]] = []  # (time, characters) of every text event
        self.errors: Counter[str] = Counter()
        self.connection: http.client.HTTPConnection | None = None

    def run(self) -> None:
        stream = self.stream_first
        while (started := time.perf_counter()) < self.stop_at:
            try:
                record = self.stream_once() if stream else self.generate_once()
            except (OSError, http.client.HTTPException, ValueError) as exc:
                record = {"error": type(exc).__name__}
                self.connection = None  # a broken connection is not reused
            if started >= self.count_from:
                record["latency_s"] = time.perf_counter() - started
                if "error" in record:
                    self.errors[record["error"]] += 1
                else:
                    self.records.append(record)
            if self.mode == "mixed":
                stream = not stream

    def post(self, path: str) -> http.client.HTTPResponse:
        if self.connection is None:
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            self.connection.connect()
            # http.client sends a request's headers and body apart; with Nagle's algorithm on, the
            # body waits for the server's delayed ACK (about 40 ms a request on a kept-alive
            # connection). Off, as curl has it.
            self.connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connection.request("POST", path, body=json.dumps(self.body),
                                headers={"Content-Type": "application/json"})
        return self.connection.getresponse()

    def generate_once(self) -> dict[str, Any]:
        response = self.post("/v1/generate")
        body = json.loads(response.read())
        if response.status != 200:
            return {"error": f"HTTP {response.status}"}
        return {"kind": "generate", "characters": body["characters"]}

    def stream_once(self) -> dict[str, Any]:
        started = time.perf_counter()
        response = self.post("/v1/generate/stream")
        if response.status != 200:
            response.read()
            return {"error": f"HTTP {response.status}"}
        first, kind, done = None, "", None
        for raw in response:  # lines, as they arrive
            line = raw.decode("utf-8").rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                if kind == "text":
                    now = time.perf_counter()
                    self.arrivals.append((now, sum(map(len, json.loads(line[6:])["delta"]))))
                    if first is None:
                        first = now - started
                elif kind == "done":
                    done = json.loads(line[6:])
                elif kind == "error":
                    return {"error": "error event"}
        if done is None or first is None:
            return {"error": "stream ended early"}
        return {"kind": "stream", "characters": done["characters"], "first_char_s": first}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def train_small_model(out: Path, steps: int) -> Path:
    print(f"training a `default`-size model for {steps} steps on the bundled text ...", flush=True)
    api.train(None, out_dir=out, preset="default", max_steps=steps, eval_every=steps, seed=0)
    return out


def run_load(run: Path, log_path: Path, *, streams: int, batching: bool, duration: float, warmup: float,
             length: int, device: str, sampler: str = "default") -> dict[str, Any]:
    """One server, ``streams`` stream clients for ``warmup`` + ``duration`` seconds; its figures."""
    port = free_port()
    server = start_server(run, port, streams, log_path, batching, device)
    try:
        facts = json.loads(http_get(port, "/v1/model"))
        body = {"prompt": PROMPT, "length": length, "temperature": 0.8, **SAMPLERS[sampler]}
        start = time.perf_counter()
        count_from, stop_at = start + warmup, start + warmup + duration
        clients = [Client(port, "stream", body, count_from, stop_at, i) for i in range(streams)]
        for client in clients:
            client.start()
        samples: list[tuple[float, int]] = []  # (seconds since counting began, server RSS KiB)
        loads: list[float] = []  # the machine's 1-minute load average: is the CPU shared?
        while any(c.is_alive() for c in clients):
            now = time.perf_counter()
            if now >= count_from:
                samples.append((now - count_from, rss_kib(server.pid)))
                loads.append(os.getloadavg()[0])
            time.sleep(1.0)
        for client in clients:
            client.join()
        peak_kib = rss_kib(server.pid, "VmHWM")
    finally:
        server.terminate()
        server.wait(timeout=30)
    records = [r for c in clients for r in c.records]
    errors = sum((c.errors for c in clients), Counter())
    first = [r["first_char_s"] for r in records]
    tail = max(1, len(samples) // 10)  # RSS at the start and end: medians of the first and last tenth
    rss_start = statistics.median(kib for _, kib in samples[:tail]) if samples else 0
    rss_end = statistics.median(kib for _, kib in samples[-tail:]) if samples else 0
    # RSS swings by MiB as requests come and go; a least-squares slope shows a trend through that.
    slope = (statistics.linear_regression([t for t, _ in samples], [kib for _, kib in samples]).slope
             if len(samples) > 2 else float("nan"))
    return {
        "model": {"checkpoint": facts["checkpoint"], "parameters": facts["parameters"],
                  "hidden_size": facts["config"]["model"]["hidden_size"],
                  "num_layers": facts["config"]["model"]["num_layers"]},
        "streams": streams, "batching": batching, "duration_s": duration, "warmup_s": warmup,
        "sampler": sampler,
        # Characters as they arrive inside the counted time, so the streams under way when it
        # starts and ends count for what they delivered in it (whole streams would count in steps
        # of K x length characters: a wave of 64 streams is 1-2 s).
        "requests": len(records),
        "chars_per_s": sum(n for c in clients for t, n in c.arrivals if count_from <= t < stop_at) / duration,
        "first_char_p50_s": percentile(first, 50), "first_char_p99_s": percentile(first, 99),
        "errors": dict(errors), "error_count": sum(errors.values()),
        "server_peak_rss_mib": peak_kib / 1024,
        "server_rss_start_mib": rss_start / 1024, "server_rss_end_mib": rss_end / 1024,
        "server_rss_slope_mib_per_min": slope * 60 / 1024,
        # Whether a rise levels off (an allocator settling) or goes on (a leak): each minute's median.
        "server_rss_by_minute_mib": [
            statistics.median(kib for t, kib in samples if m * 60 <= t < (m + 1) * 60) / 1024
            for m in range(int(duration // 60))],
        "load_average_median": statistics.median(loads) if loads else float("nan"),
    }


def http_get(port: int, path: str) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path)
    return connection.getresponse().read()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def results_table(results: list[dict[str, Any]]) -> str:
    rows = [[r["streams"], "batched" if r["batching"] else "per-request (`--no-batching`)",
             f"{r['chars_per_s']:,.0f}", f"{ms(r['first_char_p50_s'])} / {ms(r['first_char_p99_s'])}",
             r["error_count"], f"{r['server_peak_rss_mib']:.0f} MiB",
             f"{r['server_rss_start_mib']:.0f} -> {r['server_rss_end_mib']:.0f} MiB",
             f"{r['load_average_median']:.1f}"]
            for r in results]
    return _report.markdown_table(["streams", "path", "chars/s (all streams)", "first char p50 / p99",
                                   "errors", "peak RSS", "RSS start -> end", "load avg"], rows)


def targets(results: list[dict[str, Any]], device: str = "cpu") -> list[str]:
    """The issue's targets, each with what this run measured."""
    by = {(r["streams"], r["batching"]): r["chars_per_s"] for r in results}
    lines = []

    def check(label: str, value: float, goal: float) -> None:
        if value != value:  # nan: the other side had no characters
            lines.append(f"{label}: not measured (a run had no characters) NOT met")
            return
        lines.append(f"{label}: {value:.2f}x (target >= {goal:g}x) {'met' if value >= goal else 'NOT met'}")

    for streams, goal in ((16, 3.0), (64, 5.0)):
        if (streams, True) in by and (streams, False) in by:
            check(f"{streams} streams, batched / per-request",
                  ratio(by[streams, True], by[streams, False]), goal)
    alone = max((by[k] for k in ((1, True), (1, False)) if k in by), default=None)
    if (16, True) in by and alone:
        check("16 batched streams / one stream alone (the faster path at 1)", ratio(by[16, True], alone), 2.5)
    if device.startswith("cuda") and (64, True) in by and alone:  # a GPU step costs alike at any batch
        check("64 batched streams / one stream alone, on the GPU", ratio(by[64, True], alone), 30.0)
    for r in results:
        if r["streams"] == 16 and r["batching"]:
            p50 = r["first_char_p50_s"]
            lines.append(f"first character p50 at 16 batched streams: {ms(p50)} (target < 250 ms) "
                         f"{'met' if p50 < 0.25 else 'NOT met'}")
    errors = sum(r["error_count"] for r in results)
    lines.append(f"errors over every run: {errors} (target 0) {'met' if errors == 0 else 'NOT met'}")
    return lines


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def soak_lines(r: dict[str, Any]) -> list[str]:
    return [f"soak: {r['streams']} batched streams for {r['duration_s']:g} s after {r['warmup_s']:g} s of "
            f"warm-up: {r['requests']:,} streams, "
            f"{r['chars_per_s']:,.0f} chars/s, {r['error_count']} errors; server RSS "
            f"{r['server_rss_start_mib']:.1f} -> {r['server_rss_end_mib']:.1f} MiB (medians of the first and "
            f"last tenth), trend {r['server_rss_slope_mib_per_min']:+.2f} MiB/min, peak "
            f"{r['server_peak_rss_mib']:.0f} MiB; by minute "
            + ", ".join(f"{mib:.1f}" for mib in r["server_rss_by_minute_mib"]) + " MiB"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="run folder or checkpoint to serve (default: train one)")
    parser.add_argument("--train-steps", type=int, default=5, help="steps for the model trained here")
    parser.add_argument("--streams", default="1,16,64", help="concurrent streams, comma-separated")
    parser.add_argument("--duration", type=parse_duration, default=30.0,
                        help="counted time per run: seconds, or e.g. 90s, 5m (default 30)")
    parser.add_argument("--warmup", type=parse_duration, default=5.0, help="uncounted lead-in (default 5)")
    parser.add_argument("--soak", type=parse_duration_or_zero, default=300.0,
                        help="then 16 batched streams this long, for memory (0: none; default 5m)")
    parser.add_argument("--soak-warmup", type=parse_duration, default=60.0,
                        help="the soak's uncounted lead-in (default 1m: the allocator settles in the first "
                             "minute, about +6 MiB, then stays flat)")
    parser.add_argument("--length", type=int, default=200, help="characters per stream (default 200)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--samplers", default="default",
                        help=f"comma-separated, of {', '.join(SAMPLERS)} (default: default)")
    parser.add_argument("--no-write", action="store_true",
                        help="print only; do not touch docs/benchmarks.md or bench/results/")
    args = parser.parse_args(argv)
    counts = [int(k) for k in args.streams.split(",")]
    if min(counts) < 1 or args.length < 1:
        parser.error("--streams and --length must be at least 1")
    samplers = args.samplers.split(",")
    if unknown := [name for name in samplers if name not in SAMPLERS]:
        parser.error(f"unknown samplers {unknown}; known: {', '.join(SAMPLERS)}")

    results, soak = [], None
    with tempfile.TemporaryDirectory(prefix="charlstm-serve-load-") as tmp:
        run = args.run or train_small_model(Path(tmp) / "run", args.train_steps)
        runs = [(streams, sampler) for streams in counts for sampler in samplers]
        for i, (streams, sampler) in enumerate(runs):
            order = (False, True) if i % 2 == 0 else (True, False)  # neither path always goes first
            for batching in order:
                print(f"{streams} streams, {'batched' if batching else 'per-request'}, sampler {sampler}, "
                      f"{args.duration:g} s (+{args.warmup:g} s warm-up) ...", flush=True)
                results.append(run_load(run, Path(tmp) / "server.log", streams=streams, batching=batching,
                                        duration=args.duration, warmup=args.warmup, length=args.length,
                                        device=args.device, sampler=sampler))
                r = results[-1]
                print(f"  {r['chars_per_s']:,.0f} chars/s, first char p50 {ms(r['first_char_p50_s'])}, "
                      f"errors {r['errors'] or 0}", flush=True)
        if args.soak:
            print(f"soak: 16 batched streams, {args.soak:g} s (+{args.soak_warmup:g} s warm-up) ...",
                  flush=True)
            soak = run_load(run, Path(tmp) / "server.log", streams=16, batching=True, duration=args.soak,
                            warmup=args.soak_warmup, length=args.length, device=args.device)
    m = results[0]["model"]
    intro = (f"K clients on loopback (Nagle's algorithm off, as curl has it), each sending streams of "
             f"{args.length} characters back to back for "
             f"{args.duration:g} s (after {args.warmup:g} s of warm-up, not counted), against a server with "
             f"K slots (`--max-concurrent K`, device {args.device}) serving a {m['num_layers']} x "
             f"LSTM({m['hidden_size']}) model, {m['parameters']:,} parameters; each row is its own server "
             "process, batched and per-request alternating which goes first. Characters/s counts the "
             "characters that reach the clients within the counted time; the first character is timed at "
             "the client, from sending the request to the first text event.")
    if samplers != ["default"]:
        record_samplers(intro, results, args)
        return
    notes = targets(results, args.device) + (soak_lines(soak) if soak else [])
    markdown = intro + "\n\n" + results_table(results) + "\n\n" + _report.bullets(notes)
    print("\n" + markdown)
    if args.no_write:
        return
    info = _report.machine_info()
    section = _report.section_markdown("Serving under load (`bench/serve_load.py`)", info, [markdown])
    data = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}, "results": results,
            "soak": soak}
    _report.record("serve_load", section, data)


def record_samplers(intro: str, results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """The samplers' table: each run's speed against the default sampler's, same streams and path."""
    base = {(r["streams"], r["batching"]): r["chars_per_s"] for r in results if r["sampler"] == "default"}
    rows = [[r["streams"], "batched" if r["batching"] else "per-request", r["sampler"],
             ", ".join(f"{k} {v}" for k, v in SAMPLERS[r["sampler"]].items()) or "temperature 0.8 only",
             f"{r['chars_per_s']:,.0f}",
             f"{ratio(r['chars_per_s'], base.get((r['streams'], r['batching']), 0)):.2f}",
             f"{ms(r['first_char_p50_s'])}", r["error_count"]] for r in results]
    table = _report.markdown_table(["streams", "path", "sampler", "settings", "chars/s", "/ default",
                                    "first char p50", "errors"], rows)
    markdown = intro + "\n\n" + table
    print("\n" + markdown)
    if args.no_write:
        return
    info = _report.machine_info()
    section = _report.section_markdown("Serving under load: min-p and the repetition control "
                                       "(`bench/serve_load.py --samplers`)", info, [markdown])
    _report.record("serve_load_samplers", section, {"machine": info, "results": results,
                                                    "args": {k: str(v) for k, v in vars(args).items()}})


def parse_duration_or_zero(text: str) -> float:
    return 0.0 if text.strip() in ("0", "0s") else parse_duration(text)


if __name__ == "__main__":
    main()
