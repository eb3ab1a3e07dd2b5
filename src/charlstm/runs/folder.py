"""Run folders: where a training run keeps its config, metrics, data and checkpoints.

    RUN/config.json        resolved model, train and corpus configs, sources
    RUN/metrics.jsonl      one JSON line per evaluation (``metrics``)
    RUN/data/              the prepared splits (train.bin, val.bin, meta.json)
    RUN/last.safetensors   the latest state, for resume
    RUN/<best>.safetensors the best k by the run's metric
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from charlstm.config import CorpusConfig, ModelConfig, TrainConfig
from charlstm.data.prepared import META_FILE, SPLITS
from charlstm.errors import CheckpointError
from charlstm.runs.checkpoint import SUFFIX, read_meta
from charlstm.runs.files import remove_own, write_atomic
from charlstm.runs.manifest import MANIFEST_FILE, read_manifest, write_manifest
from charlstm.runs.meta import parse_configs
from charlstm.runs.metrics import METRICS_FILE

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
DATA_DIR = "data"
LAST = "last" + SUFFIX


def best_checkpoints(run_dir: Path) -> list[tuple[float, Path]]:
    """(metric, path) of the run's own best checkpoints, lowest metric first.

    A run with a manifest has the files it lists that still exist. A run from before manifests
    is read file by file; a file that is not a readable checkpoint is skipped with a warning.
    """
    listed = read_manifest(run_dir)
    if listed is not None:
        return sorted((metric, run_dir / name) for name, metric in listed.items()
                      if (run_dir / name).is_file())
    found = []
    for path in _checkpoint_files(run_dir):
        try:
            metric = read_meta(path).metric
        except CheckpointError as exc:
            log.warning("skipping %s", exc)
            continue
        if metric is not None:
            found.append((metric.value, path))
    return sorted(found)


def list_best(run_dir: Path, name: str, metric: float) -> None:
    """Enter a best checkpoint in the manifest before it is written (a listed file yet to come
    is skipped), so a kill during or after the write never leaves a file the run disowns."""
    listed = read_manifest(run_dir)
    if listed is None:  # a run from before manifests adopts the best checkpoints it has
        listed = {path.name: value for value, path in best_checkpoints(run_dir)}
    write_manifest(run_dir, {**listed, name: metric})


def forget_missing(run_dir: Path) -> list[str]:
    """Drop manifest entries whose file is gone (a kill between listing and writing); returns them."""
    listed = read_manifest(run_dir)
    if listed is None:
        return []
    missing = [n for n in listed if not (run_dir / n).is_file()]
    if missing:
        write_manifest(run_dir, {n: m for n, m in listed.items() if n not in missing})
        log.info("%s: forgot %d listed checkpoint(s) a kill kept from being written", run_dir, len(missing))
    return missing


def prune_best(run_dir: Path, *, keep: int) -> list[Path]:
    """Delete the listed best checkpoints past the ``keep`` best; only listed files, ever.

    A listed file that is gone does not count toward ``keep``: it would cost a real one its place.
    """
    forget_missing(run_dir)
    listed = read_manifest(run_dir) or {}
    stale = [n for n, _ in sorted(listed.items(), key=lambda item: item[1])[keep:]]
    for n in stale:
        (run_dir / n).unlink(missing_ok=True)  # first the file: a kill now leaves a listed gap
        del listed[n]
    if stale:
        write_manifest(run_dir, listed)
    return [run_dir / n for n in stale]


def foreign_files(run_dir: Path) -> list[Path]:
    """Checkpoint-named files in a run folder that charlstm did not write as this run's (kept)."""
    listed = read_manifest(run_dir)
    return [] if listed is None else [p for p in _checkpoint_files(run_dir) if p.name not in listed]


def _checkpoint_files(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.glob("*" + SUFFIX) if p.name != LAST and not p.name.startswith(".tmp-"))


def has_checkpoint(run_dir: Path) -> bool:
    """Whether the run saved anything to go on from: ``last`` or one of its best checkpoints."""
    return (run_dir / LAST).is_file() or bool(best_checkpoints(run_dir))


def is_run_folder(path: Path) -> bool:
    """A training run's folder: its ``last`` checkpoint, or a config.json with training settings."""
    if (path / LAST).is_file():
        return True
    try:
        raw = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return (path / CONFIG_FILE).is_file()  # unreadable: treat it as a run's, to be safe
    return isinstance(raw, dict) and "train" in raw  # a model folder's config.json has no "train"


def check_outside_runs(path: Path) -> None:
    """Refuse a path that is a run folder or anywhere inside one: a command writing there would mix
    its files in. Resolved first, so neither ``..`` nor a link leads back into a run."""
    resolved = path.resolve()
    for folder in (resolved, *resolved.parents):
        if is_run_folder(folder):
            where = "inside the" if folder != resolved else "the"
            raise CheckpointError(f"{path} is {where} run folder {folder}; choose an --out outside it")


def make_folder(out_dir: Path) -> bool:
    """Create a new run's folder (and its parents); whether this call created it."""
    if out_dir.exists() and not out_dir.is_dir():
        raise CheckpointError(f"{out_dir} exists and is not a folder; choose another output folder")
    try:
        out_dir.mkdir(parents=True)
    except FileExistsError:
        return False
    except OSError as exc:
        raise CheckpointError(f"{out_dir}: cannot create the run folder ({exc.strerror})") from None
    return True


def check_fresh(out_dir: Path, *, overwrite: bool = False) -> None:
    """Refuse to start a run over an existing one: its checkpoints would be mixed or lost.

    A run that stopped before its first checkpoint holds nothing to lose: ``overwrite``
    replaces it (its config, metrics and RUN/data); one with checkpoints is never replaced.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise CheckpointError(f"{out_dir} exists and is not a folder; choose another output folder")
    configured = (out_dir / CONFIG_FILE).exists()
    if has_checkpoint(out_dir) or (not configured and any(out_dir.glob("*" + SUFFIX))):
        raise CheckpointError(f"{out_dir} already holds a run; resume it or choose another output folder",
                              hint=f"--resume {out_dir}, or another --out")
    if not configured and not _prepared_by_a_start(out_dir / DATA_DIR):
        return
    if not overwrite:
        resume = f"--resume {out_dir} starts it again from step 0 with its settings, " if configured else ""
        raise CheckpointError(f"{out_dir} holds a run that stopped before its first checkpoint: {resume}"
                              "--overwrite replaces it",
                              hint=f"--resume {out_dir}, or --overwrite" if configured else "--overwrite")
    for name in (CONFIG_FILE, METRICS_FILE, MANIFEST_FILE, "train.log", DATA_DIR, "tensorboard"):
        remove_own(out_dir / name)
    log.info("%s: replaced a run that had no checkpoint", out_dir)


def _prepared_by_a_start(folder: Path) -> bool:
    """RUN/data as a new run's preparation leaves it, whole or cut short: its files and no other."""
    ours = {META_FILE, *(f"{split}.bin{tmp}" for split in SPLITS for tmp in ("", ".tmp"))}
    return folder.is_dir() and all(p.name in ours for p in folder.iterdir())


def stopped_while_starting(run_dir: Path) -> bool:
    """A run killed after preparing (some of) RUN/data but before writing its config.json."""
    return not (run_dir / CONFIG_FILE).exists() and _prepared_by_a_start(run_dir / DATA_DIR)


def resolve_checkpoint(path: Path, which: str = "best") -> Path:
    """A checkpoint file, or a run folder's best (``which="best"``) or last checkpoint."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such run folder or checkpoint file")
    if which == "best":
        for _, best in best_checkpoints(path):
            try:
                read_meta(best)
                return best
            except CheckpointError as exc:  # a damaged best: the next one is almost as good
                log.warning("skipping %s", exc)
    last = path / LAST
    if last.is_file():
        return last
    raise CheckpointError(f"{path}: holds no checkpoint ({LAST} or a best checkpoint)")


@dataclass(frozen=True)
class RunRecord:
    """How a run was started, from RUN/config.json (the configs themselves live in checkpoints)."""

    preset: str | None = None
    sources: tuple[str, ...] = ()
    data_dir: str = DATA_DIR  # relative to the run folder, or an absolute prepared folder


def read_record(run_dir: Path) -> RunRecord:
    """RUN/config.json's provenance; a run folder without one gets the defaults."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return RunRecord()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return RunRecord(preset=raw.get("preset"), sources=tuple(raw.get("sources", ())),
                         data_dir=str(raw.get("data_dir", DATA_DIR)))
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: unreadable or damaged ({exc})") from None


def data_dir(run_dir: Path) -> Path:
    """The run's prepared data: RUN/data, or the prepared folder the run was started on."""
    return run_dir / read_record(run_dir).data_dir  # an absolute recorded path replaces run_dir


def read_configs(run_dir: Path) -> tuple[ModelConfig, TrainConfig, CorpusConfig]:
    """The configs RUN/config.json recorded when the run started."""
    path = run_dir / CONFIG_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable or damaged ({exc})") from None
    return parse_configs(raw, path)


def resume_point(run_dir: Path) -> Path | None:
    """What a resume starts from: ``last``, else (a kill between the two writes) the newest best."""
    if (run_dir / LAST).is_file():
        return run_dir / LAST
    newest = None
    for _, path in best_checkpoints(run_dir):
        try:
            step = read_meta(path).progress.step
        except CheckpointError as exc:
            log.warning("skipping %s", exc)
            continue
        if newest is None or step > newest[0]:
            newest = (step, path)
    return None if newest is None else newest[1]


def run_dir_of(checkpoint_path: Path) -> Path | None:
    """The run folder a checkpoint sits in, when it sits in one."""
    parent = checkpoint_path.parent
    return parent if (parent / CONFIG_FILE).is_file() else None


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    write_atomic(run_dir / CONFIG_FILE, json.dumps(config, indent=2) + "\n")


def config_record(model: ModelConfig, train: TrainConfig, corpus: CorpusConfig, **extra: Any) -> dict:
    """What RUN/config.json holds: the resolved configs and how the run was started."""
    return {"model": asdict(model), "train": asdict(train), "corpus": asdict(corpus), **extra}
