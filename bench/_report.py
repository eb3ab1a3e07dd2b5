"""Shared helpers for the benchmarks: machine description, results files, docs sections.

Each benchmark owns one section of ``docs/benchmarks.md``, fenced by
``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``; a rerun replaces only its
own section, so benchmarks run on different days can share one page.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
DOCS_PATH = ROOT / "docs" / "benchmarks.md"
RESULTS_DIR = ROOT / "bench" / "results"

_INTRO = """# Benchmarks

Figures written by the scripts in `bench/`; each section is replaced when its
script is run again (`python bench/NAME.py --help`). Timings come from shared,
noisy machines: compare the ratios measured within one run, not absolute
seconds across runs. Raw results are in `bench/results/NAME.json`.
"""


def _cpu_model() -> str:
    """The CPU's marketing name: /proc/cpuinfo on Linux, else whatever platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info() -> dict[str, Any]:
    """What the figures were measured on; torch's thread count matters as much as the cores."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if hasattr(os, "sched_getaffinity"):
        info["usable_cores"] = len(os.sched_getaffinity(0))  # a container may allow fewer than exist
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def machine_line(info: dict[str, Any]) -> str:
    """One markdown line describing the machine, for the top of a section."""
    cores = info["logical_cores"]
    if info.get("usable_cores") not in (None, cores):
        cores = f"{info['usable_cores']} of {cores}"
    parts = [
        f"{info['cpu']}, {cores} logical cores",
        f"torch {info['torch']} ({info['torch_threads']} threads)",
        f"Python {info['python']}",
    ]
    if "gpu" in info:
        parts.insert(1, f"GPU {info['gpu']}")
    return f"Machine: {'; '.join(parts)}; measured {info['date']}."


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; numbers are expected already formatted as strings."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _write_atomic(path: Path, text: str) -> None:
    """Temporary file, then rename: an interrupted run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_section(name: str, markdown: str, path: Path = DOCS_PATH) -> Path:
    """Replace (or add) the block ``<!-- bench:NAME -->...<!-- /bench:NAME -->`` in ``path``."""
    block = f"<!-- bench:{name} -->\n{markdown.strip()}\n<!-- /bench:{name} -->"
    text = path.read_text(encoding="utf-8") if path.exists() else _INTRO
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    if pattern.search(text):
        # A function replacement, so backslashes in the markdown are not read as group references.
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    _write_atomic(path, text)
    return path


def write_json(name: str, data: dict[str, Any]) -> Path:
    """Write ``bench/results/NAME.json``."""
    path = RESULTS_DIR / f"{name}.json"
    _write_atomic(path, json.dumps(data, indent=2) + "\n")
    return path


def read_json(name: str) -> dict[str, Any]:
    """Read ``bench/results/NAME.json``, as ``write_json`` wrote it."""
    return json.loads((RESULTS_DIR / f"{name}.json").read_text(encoding="utf-8"))


def bullets(notes: Sequence[str]) -> str:
    return "\n".join("- " + n for n in notes)


def section_markdown(heading: str, info: dict[str, Any], blocks: Sequence[str]) -> str:
    """A benchmark's section: its heading, the machine it ran on, then its blocks."""
    return "\n\n".join([f"## {heading}", machine_line(info), *blocks])


def record(name: str, markdown: str, data: dict[str, Any]) -> None:
    """Write section NAME of docs/benchmarks.md and bench/results/NAME.json, and say so."""
    docs = write_section(name, markdown)
    print(f"\nwrote {docs} and {write_json(name, data)}")
