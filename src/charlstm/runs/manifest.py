"""Which best checkpoints of a run folder charlstm wrote: RUN/checkpoints.json.

Pruning deletes only files named here, so a file a user put in the run folder (an export, a
copy) is never deleted and never taken for one of the run's own. The manifest is rewritten
atomically before each best checkpoint is written and after each pruned one is deleted, so
a kill between the two leaves at worst a listed file that is gone (forgotten on resume), never
a file the run disowns. A listed name is a plain file name in the run folder: a tampered
entry ("../x", a path) is skipped, never deleted.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from charlstm.runs.files import write_atomic

log = logging.getLogger(__name__)

MANIFEST_FILE = "checkpoints.json"


def read_manifest(run_dir: Path) -> dict[str, float] | None:
    """File name -> metric of the best checkpoints charlstm wrote; None for a run without a manifest."""
    path = run_dir / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        listed = {str(entry["name"]): float(entry["metric"]) for entry in raw["best"]}
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("%s: unreadable (%s); reading the checkpoints themselves instead", path, exc)
        return None
    outside = [name for name in listed if not is_plain_name(name)]
    for name in outside:
        log.warning("%s: ignoring %r, which is not a file name in the run folder", path, name)
        del listed[name]
    return listed


def is_plain_name(name: str) -> bool:
    """A file name in a folder: no path separator, not ``.`` or ``..``, nothing empty."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name \
        and os.sep not in name and "\0" not in name


def write_manifest(run_dir: Path, best: dict[str, float]) -> None:
    """Replace the manifest atomically: a reader sees the old list or the new, never half of one."""
    record = {"best": [{"name": name, "metric": metric} for name, metric in best.items()]}
    write_atomic(run_dir / MANIFEST_FILE, json.dumps(record, indent=2) + "\n")


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
