"""Which best checkpoints of a run folder charlstm wrote: RUN/checkpoints.json.

Pruning deletes only files named here, so a file a user put in the run folder (an export, a
copy) is never deleted and never taken for one of the run's own. The manifest is rewritten
atomically after each best checkpoint is saved and after each pruned one is deleted, so a
kill between the two leaves at worst an unlisted file (kept, reported) or a listed one that
is gone (skipped).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

MANIFEST_FILE = "checkpoints.json"


def read_manifest(run_dir: Path) -> dict[str, float] | None:
    """File name -> metric of the best checkpoints charlstm wrote; None for a run without a manifest."""
    path = run_dir / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {str(entry["name"]): float(entry["metric"]) for entry in raw["best"]}
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("%s: unreadable (%s); reading the checkpoints themselves instead", path, exc)
        return None


def write_manifest(run_dir: Path, best: dict[str, float]) -> None:
    """Replace the manifest atomically: a reader sees the old list or the new, never half of one."""
    record = {"best": [{"name": name, "metric": metric} for name, metric in best.items()]}
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=run_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, run_dir / MANIFEST_FILE)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_temporaries(run_dir: Path) -> list[Path]:
    """Delete the ``.tmp-*`` files an interrupted atomic write left behind; returns them."""
    removed = []
    for path in run_dir.glob(".tmp-*"):
        if path.is_file():
            path.unlink()
            removed.append(path)
    if removed:
        log.info("%s: removed %d temporary file(s) an interrupted write left", run_dir, len(removed))
    return removed
