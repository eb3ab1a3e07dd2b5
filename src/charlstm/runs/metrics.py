"""RUN/metrics.jsonl: one JSON line per evaluation, appended by training and read by reports."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from charlstm.runs.files import open_own

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    """Append one line; a partial last line (a kill mid-write) is cut off first, not glued onto."""
    path = run_dir / METRICS_FILE
    with open_own(path) as f:  # never through a link: that file is not the run's to cut or grow
        size = f.seek(0, os.SEEK_END)
        if size:
            f.seek(size - 1)
            if f.read(1) != b"\n":  # rare, so only then is the whole file read
                f.seek(0)
                keep = f.read().rfind(b"\n") + 1
                log.warning("%s: dropping a partial last line (%d bytes)", path, size - keep)
                f.truncate(keep)
        f.seek(0, os.SEEK_END)
        f.write((json.dumps(record) + "\n").encode("utf-8"))


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Every whole record of RUN/metrics.jsonl, in order; a broken line is skipped with a warning."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        try:
            record = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            record = None
            log.warning("%s: skipping line %d, which is not a JSON record", path, number)
        if isinstance(record, dict):
            records.append(record)
    return records


def best_record(metrics: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    """The metrics record with the lowest ``key`` (first on ties), or None when none has it."""
    scored = [m for m in metrics if m.get(key) is not None]
    return min(scored, key=lambda m: m[key]) if scored else None
