"""Load on `charlstm serve`: K concurrent clients on loopback for a bounded time.

The server runs as its own process (`python -m charlstm serve`), so its memory is measured
apart from the clients'. K client threads each send requests back to back over one keep-alive
connection until the time is up; requests started during the warm-up are not counted. Printed:
requests/s, characters/s, p50/p99 latency, time to first character for streams, errors, and the
server's resident memory: its peak, and how it moved from the end of the warm-up to the end.

    python bench/serve_load.py                                 # 16 streams for 60 s, a small model
    python bench/serve_load.py --run runs/alice --duration 5m  # the issue's 5-minute target
    python bench/serve_load.py --mode mixed --duration 20 --no-write

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


def start_server(run: Path, port: int, clients: int, log_path: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "charlstm", "-q", "serve", str(run), "--port", str(port),
               "--max-concurrent", str(clients)]
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
                if kind == "text" and first is None:
                    first = time.perf_counter() - started
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


def run_load(args: argparse.Namespace, run: Path, log_path: Path) -> dict[str, Any]:
    port = free_port()
    server = start_server(run, port, args.clients, log_path)
    try:
        facts = json.loads(http_get(port, "/v1/model"))
        body = {"prompt": PROMPT, "length": args.length, "temperature": 0.8}
        start = time.perf_counter()
        count_from, stop_at = start + args.warmup, start + args.warmup + args.duration
        clients = [Client(port, args.mode, body, count_from, stop_at, i) for i in range(args.clients)]
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
    latency = [r["latency_s"] for r in records]
    first = [r["first_char_s"] for r in records if r["kind"] == "stream"]
    tail = max(1, len(samples) // 10)  # RSS at the start and end: medians of the first and last tenth
    rss_start = statistics.median(kib for _, kib in samples[:tail]) if samples else 0
    rss_end = statistics.median(kib for _, kib in samples[-tail:]) if samples else 0
    # RSS swings by tens of MiB as requests come and go; a least-squares slope shows a trend through that.
    slope = (statistics.linear_regression([t for t, _ in samples], [kib for _, kib in samples]).slope
             if len(samples) > 2 else float("nan"))
    return {
        "model": {"checkpoint": facts["checkpoint"], "parameters": facts["parameters"],
                  "hidden_size": facts["config"]["model"]["hidden_size"],
                  "num_layers": facts["config"]["model"]["num_layers"]},
        "settings": {"clients": args.clients, "mode": args.mode, "length": args.length,
                     "duration_s": args.duration, "warmup_s": args.warmup, "max_concurrent": args.clients},
        "requests": len(records), "requests_per_s": len(records) / args.duration,
        "chars_per_s": sum(r["characters"] for r in records) / args.duration,
        "latency_p50_s": percentile(latency, 50), "latency_p99_s": percentile(latency, 99),
        "first_char_p50_s": percentile(first, 50), "first_char_p99_s": percentile(first, 99),
        "errors": dict(errors), "error_count": sum(errors.values()),
        "server_peak_rss_mib": peak_kib / 1024,
        "server_rss_start_mib": rss_start / 1024, "server_rss_end_mib": rss_end / 1024,
        "server_rss_min_mib": min(kib for _, kib in samples) / 1024 if samples else 0.0,
        "server_rss_max_mib": max(kib for _, kib in samples) / 1024 if samples else 0.0,
        "server_rss_slope_mib_per_min": slope * 60 / 1024,
        "load_average_median": statistics.median(loads) if loads else float("nan"),
        "rss_samples": [(round(t, 1), kib) for t, kib in samples],
    }


def http_get(port: int, path: str) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path)
    return connection.getresponse().read()


def report(result: dict[str, Any]) -> str:
    s, m = result["settings"], result["model"]

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.0f} ms"

    rows = [
        ["requests", f"{result['requests']:,} ({result['requests_per_s']:.1f}/s)"],
        ["characters generated per second", f"{result['chars_per_s']:,.0f}"],
        ["latency p50 / p99 (whole request)",
         f"{ms(result['latency_p50_s'])} / {ms(result['latency_p99_s'])}"],
    ]
    if s["mode"] != "generate":
        rows.append(["time to first character p50 / p99",
                     f"{ms(result['first_char_p50_s'])} / {ms(result['first_char_p99_s'])}"])
    rows += [
        ["errors", f"{result['error_count']}" + (f" {result['errors']}" if result["errors"] else "")],
        ["server peak RSS", f"{result['server_peak_rss_mib']:.0f} MiB"],
        ["server RSS after warm-up -> at the end",
         f"{result['server_rss_start_mib']:.1f} -> {result['server_rss_end_mib']:.1f} MiB"],
        ["server RSS range; trend (least squares)",
         f"{result['server_rss_min_mib']:.0f}-{result['server_rss_max_mib']:.0f} MiB; "
         f"{result['server_rss_slope_mib_per_min']:+.2f} MiB/min"],
        ["machine load average during the run (median)", f"{result['load_average_median']:.1f}"],
    ]
    what = {"stream": "streams", "generate": "whole-text requests",
            "mixed": "streams and whole-text requests"}[s["mode"]]
    intro = (f"{s['clients']} clients on loopback, each sending {what} of {s['length']} characters "
             f"back to back for {s['duration_s']:g} s (after {s['warmup_s']:g} s of warm-up, not counted); "
             f"the server (`--max-concurrent {s['max_concurrent']}`, one torch thread) serves a "
             f"{m['num_layers']} x LSTM({m['hidden_size']}) model, {m['parameters']:,} parameters.")
    return intro + "\n\n" + _report.markdown_table(["measure", "value"], rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="run folder or checkpoint to serve (default: train one)")
    parser.add_argument("--train-steps", type=int, default=5, help="steps for the model trained here")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--duration", type=parse_duration, default=60.0,
                        help="counted load time: seconds, or e.g. 90s, 5m (default 60)")
    parser.add_argument("--warmup", type=parse_duration, default=5.0, help="uncounted lead-in (default 5)")
    parser.add_argument("--mode", choices=["stream", "generate", "mixed"], default="stream")
    parser.add_argument("--length", type=int, default=200, help="characters per request (default 200)")
    parser.add_argument("--no-write", action="store_true",
                        help="print only; do not touch docs/benchmarks.md or bench/results/")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.length < 1:
        parser.error("--clients and --length must be at least 1")

    with tempfile.TemporaryDirectory(prefix="charlstm-serve-load-") as tmp:
        run = args.run or train_small_model(Path(tmp) / "run", args.train_steps)
        print(f"{args.clients} clients, {args.mode}, {args.duration:g} s (+{args.warmup:g} s warm-up) ...",
              flush=True)
        result = run_load(args, run, Path(tmp) / "server.log")
    markdown = report(result)
    print("\n" + markdown)
    if args.no_write:
        return
    info = _report.machine_info()
    target = ("Target (issue): no errors and no memory growth over 5 minutes of 16 concurrent streams"
              + ("." if args.duration >= 300 else
                 f"; this run is {args.duration:g} s, on a CPU shared with other work: "
                 "`--duration 5m` checks the whole target."))
    section = _report.section_markdown("Serving under load (`bench/serve_load.py`)", info, [markdown, target])
    data = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}, **result}
    _report.record("serve_load", section, data)


if __name__ == "__main__":
    main()
