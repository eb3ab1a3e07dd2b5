"""Starting a run: the library's front door for training (start, resume, train), with plain arguments.

The CLI is a thin layer over these functions; a notebook calls them directly::

    from charlstm import train, load_model, generate_text
    result = train(out_dir="runs/alice", preset="default", time_budget=300)
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from charlstm import presets
from charlstm.config.choices import Precision
from charlstm.config.corpus import CorpusConfig
from charlstm.config.model import ModelConfig
from charlstm.config.train import RESUMABLE_FIELDS, TrainConfig
from charlstm.data.prepared import PreparedData, open_prepared
from charlstm.data.sources import default_corpus_path
from charlstm.errors import CharLSTMError, CheckpointError, ConfigError
from charlstm.model.runtime import check_bf16, resolve_device, seed_everything
from charlstm.runs import folder as runs
from charlstm.runs.checkpoint import read_meta
from charlstm.runs.files import remove_own
from charlstm.runs.folder import config_record
from charlstm.runs.lock import RunLock
from charlstm.runs.manifest import remove_temporaries
from charlstm.training import distributed, finetune, probe, run_data, sizing
from charlstm.training.tensorboard import summary_writer_class
from charlstm.training.trainer import Trainer, TrainResult

log = logging.getLogger(__name__)


def start_run(
    sources: Sequence[str | Path] | None,
    out_dir: str | Path,
    *,
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
    progress_bar: bool = True,
    overwrite: bool = False,
) -> Trainer:
    """Prepare the text (or use a prepared data folder) for a new run; return its trainer.

    ``preset`` defaults to ``auto``; with ``init_from`` among the overrides (fine-tuning) the
    training settings default to the source run's instead. ``overwrite`` replaces a run folder
    that holds no checkpoint (one that died before its first); a run with checkpoints never is.
    The trainer holds the run folder's lock until it has trained.
    """
    out_dir, overrides = Path(out_dir), overrides or {}
    source = finetune.open_source(overrides["init_from"]) if overrides.get("init_from") else None
    preset, (model_cfg, train_cfg, corpus_cfg) = _resolve_settings(preset, overrides, source)
    dist = distributed.from_environment()
    lock, created = _claim_new_folder(out_dir, overwrite, dist)
    paths = [Path(s) for s in sources] if sources else [default_corpus_path()]
    try:
        data, corpus_cfg, data_dir = run_data.shared_data(paths, out_dir, corpus_cfg, train_cfg, source,
                                                          progress_bar, dist)
        model_cfg = replace(model_cfg, vocab_size=len(data.vocab))
        train_cfg = run_data.framing_for_data(train_cfg, data, given=set(overrides))
        plan = None
        if source is None and presets.PRESETS[preset].sized:
            plan, model_cfg, train_cfg = _size_run(model_cfg, train_cfg, set(overrides), data, dist)
        seed_everything(train_cfg.seed)  # the initial weights and dropout draws follow the seed
        weights = finetune.initial_weights(source, len(data.vocab)) if source else None
        trainer = Trainer(out_dir, data, model_cfg, train_cfg, corpus_cfg, progress_bar=progress_bar,
                          dist=dist, initial_weights=weights, lock=lock)
        seed_processes(train_cfg.seed, dist)
    except BaseException:
        if created and lock is not None:  # only the folder's holder may take it away
            shutil.rmtree(out_dir, ignore_errors=True)
        if lock is not None:
            lock.release()
        raise
    if dist.is_main:
        runs.write_config(out_dir, config_record(
            model_cfg, train_cfg, corpus_cfg, preset=preset, sources=[str(p) for p in paths],
            data_dir=data_dir, **({"sizing": plan.as_dict()} if plan else {}),
            **({"init_from": source.record(data.vocab)} if source else {})))
    _log_start(trainer)
    return trainer


def _resolve_settings(preset: str | None, overrides: dict[str, Any], source: finetune.Source | None,
                      ) -> tuple[str | None, tuple[ModelConfig, TrainConfig, CorpusConfig]]:
    """The preset's (or, fine-tuning, the source's) configs with the overrides; a missing extra or a
    device that cannot run the precision fails here, not after preparing a corpus."""
    if source is not None:
        model_cfg, train_cfg, corpus_cfg = finetune.fine_tune_configs(source, preset, overrides)
        train_cfg = replace(train_cfg, init_from=str(source.loaded.path.resolve()))
    else:
        preset = preset or "auto"
        model_cfg, train_cfg, corpus_cfg = presets.resolve(preset, overrides)
    if train_cfg.tensorboard:
        summary_writer_class()
    if train_cfg.precision == Precision.BF16:
        check_bf16(resolve_device(train_cfg.device))
    return preset, (model_cfg, train_cfg, corpus_cfg)


def _size_run(model_cfg: ModelConfig, train_cfg: TrainConfig, given: set[str], data: PreparedData,
              dist: distributed.Distributed) -> tuple[sizing.Plan | None, ModelConfig, TrainConfig]:
    """The ``auto`` preset's choice: rank 0 probes and chooses, every rank takes the same."""
    plan = None
    if dist.is_main:
        plan = probe.plan_run(model_cfg, train_cfg, given=given, train_chars=data.sizes["train"],
                              device=resolve_device(train_cfg.device))
        log.info("%s", plan.describe())
    chosen = dist.gather_objects(plan.chosen if plan else None)[0]
    return (plan, *sizing.apply_choice(model_cfg, train_cfg, chosen))


def _log_start(trainer: Trainer) -> None:
    """What the tutorial printed at its start (its names kept), and how the text was cut."""
    data = trainer.data
    log.info("Total Characters: %d", data.total_characters)
    log.info("Total Vocab: %d", len(data.vocab))
    log.info("%s", trainer.batches.describe())
    log.info("Splits: %s", ", ".join(f"{k} {v}" for k, v in data.sizes.items()))
    log.info("Parameters: %d trainable", trainer.model.num_parameters())


def _claim_new_folder(out_dir: Path, overwrite: bool,
                      dist: distributed.Distributed) -> tuple[RunLock | None, bool]:
    """Rank 0 makes and locks a new run's folder and checks it holds no run; every rank learns
    the outcome. Returns rank 0's lock and whether it created the folder."""
    lock, created, failure = None, False, None
    if dist.is_main:
        try:
            created = runs.make_folder(out_dir)
            lock = RunLock(out_dir).acquire()
            runs.check_fresh(out_dir, overwrite=overwrite)
        except CharLSTMError as exc:
            if lock is not None:
                lock.release()
            failure = exc
    dist.raise_rank0_failure(failure, CheckpointError, "start the run")
    return lock, created


def resume_run(
    run_dir: str | Path, *, overrides: dict[str, Any] | None = None, progress_bar: bool = True
) -> Trainer:
    """Rebuild a run's trainer from its ``last`` checkpoint, exactly where it stopped.

    Without ``last`` it resumes from the newest best checkpoint (a kill between the two writes),
    and a run that stopped before its first checkpoint starts again from step 0 with the
    settings in its config.json. The trainer holds the run folder's lock until it has trained.
    """
    run_dir = Path(run_dir)
    changed = set(overrides or {}) - RESUMABLE_FIELDS
    if changed:
        raise ConfigError(
            f"cannot change {', '.join(sorted(changed))} when resuming; only "
            f"{', '.join(sorted(RESUMABLE_FIELDS))} may change"
        )
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run folder" if not run_dir.exists()
                              else f"{run_dir} is not a run folder but a file; resume takes the folder")
    dist = distributed.from_environment()
    lock = RunLock(run_dir).acquire() if dist.is_main else None
    try:
        return _resume(run_dir, overrides or {}, progress_bar, dist, lock)
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def _resume(run_dir: Path, overrides: dict[str, Any], progress_bar: bool, dist: distributed.Distributed,
            lock: RunLock | None) -> Trainer:
    """resume_run's work, under the folder's lock."""
    if dist.is_main:
        remove_temporaries(run_dir)
        runs.forget_missing(run_dir)
    start = runs.resume_point(run_dir) if run_dir.is_dir() else None
    if start is None and runs.stopped_while_starting(run_dir):
        raise CheckpointError(f"{run_dir}: stopped while starting, before its settings were written; "
                              f"start it again with --out {run_dir} --overwrite", hint="--overwrite")
    if start is None and not (run_dir / runs.CONFIG_FILE).is_file():
        raise CheckpointError(f"{run_dir}: no {runs.LAST} to resume from")
    if start is None:
        return _restart(run_dir, overrides, progress_bar, dist, lock)
    meta = read_meta(start)
    train_cfg = replace(meta.train_config, **overrides)
    data = open_prepared(runs.data_dir(run_dir))
    seed_everything(train_cfg.seed)  # overwritten by the saved RNG state; Python and NumPy keep this
    trainer = Trainer(run_dir, data, meta.model_config, train_cfg, meta.corpus_config,
                      progress_bar=progress_bar, dist=dist, lock=lock)
    trainer.checkpoints.restore(start)
    for path in runs.foreign_files(run_dir):
        log.warning("%s is not one of this run's checkpoints: kept, and ignored", path)
    log.info("resuming %s at step %d, epoch %d (from %s)", run_dir, trainer.progress.step,
             trainer.progress.epoch + 1, start.name)
    return trainer


def _restart(run_dir: Path, overrides: dict[str, Any], progress_bar: bool,
             dist: distributed.Distributed, lock: RunLock | None) -> Trainer:
    """A run that died before its first checkpoint, from step 0 with its recorded settings."""
    model_cfg, train_cfg, corpus_cfg = runs.read_configs(run_dir)
    train_cfg = replace(train_cfg, **overrides)
    data = open_prepared(runs.data_dir(run_dir))
    weights = None
    if train_cfg.init_from:  # a fine-tune starts again from its source's weights
        weights = finetune.initial_weights(finetune.open_source(train_cfg.init_from), model_cfg.vocab_size)
    if dist.is_main:  # the dead attempt's curves would repeat the steps about to be taken
        remove_own(run_dir / runs.METRICS_FILE)
        remove_own(run_dir / "tensorboard")
    log.warning("%s has no checkpoint: starting it again from step 0 with its recorded settings", run_dir)
    seed_everything(train_cfg.seed)
    trainer = Trainer(run_dir, data, model_cfg, train_cfg, corpus_cfg, progress_bar=progress_bar,
                      dist=dist, initial_weights=weights, lock=lock)
    seed_processes(train_cfg.seed, dist)
    return trainer


def train(
    sources: Sequence[str | Path] | None = None,
    *,
    out_dir: str | Path | None = None,
    resume: str | Path | None = None,
    preset: str | None = None,
    progress_bar: bool = False,
    overwrite: bool = False,
    **overrides: Any,
) -> TrainResult:
    """Train a new run into ``out_dir``, or continue ``resume``; keyword overrides name config fields."""
    try:
        if resume is not None:
            return resume_run(resume, overrides=overrides, progress_bar=progress_bar).fit()
        if out_dir is None:
            raise ConfigError("give out_dir for a new run (or resume=RUN)", hint="--out RUN_FOLDER")
        return start_run(sources, out_dir, preset=preset, overrides=overrides, progress_bar=progress_bar,
                         overwrite=overwrite).fit()
    finally:
        distributed.shutdown()  # leave the process group torchrun's processes joined


def seed_processes(seed: int, dist: distributed.Distributed) -> None:
    """Give each process of a distributed run its own dropout draws (after DDP copied rank 0's weights)."""
    if dist.enabled:
        torch.manual_seed(seed + dist.rank)
