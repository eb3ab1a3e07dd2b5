"""The library's front door: start, resume and run training with plain arguments.

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

from charlstm import presets, runs
from charlstm.corpus import CorpusConfig, Vocab, default_corpus_path, load_text, summarize
from charlstm.data import open_prepared, write_prepared
from charlstm.errors import CheckpointError, ConfigError
from charlstm.model import ModelConfig
from charlstm.train import RESUMABLE_FIELDS, TrainConfig, Trainer, TrainResult, config_record

log = logging.getLogger(__name__)


def _check_fresh(out_dir: Path) -> None:
    """Refuse to start over an existing run: its checkpoints would be mixed or lost."""
    if out_dir.exists() and not out_dir.is_dir():
        raise CheckpointError(f"{out_dir} exists and is not a folder; choose another --out")
    if (out_dir / runs.CONFIG_FILE).exists() or any(out_dir.glob("*.safetensors")):
        raise CheckpointError(
            f"{out_dir} already holds a run; continue it with --resume {out_dir} "
            "or choose another --out"
        )


def start_run(
    sources: Sequence[str | Path] | None,
    out_dir: str | Path,
    *,
    preset: str = "default",
    overrides: dict[str, Any] | None = None,
    progress_bar: bool = True,
) -> Trainer:
    """Read and prepare the text into a new run folder and return its trainer."""
    out_dir = Path(out_dir)
    model_cfg, train_cfg, corpus_cfg = presets.resolve(preset, overrides)
    _check_fresh(out_dir)
    paths = [Path(s) for s in sources] if sources else [default_corpus_path()]
    text = load_text(paths, corpus_cfg)
    vocab = Vocab.from_text(text)
    model_cfg = replace(model_cfg, vocab_size=len(vocab))
    created = not out_dir.exists()
    try:
        data = write_prepared(
            text, vocab, out_dir / runs.DATA_DIR, val_fraction=train_cfg.val_fraction,
            test_fraction=train_cfg.test_fraction,
            extra_meta={"sources": [str(p) for p in paths], "corpus_config": corpus_cfg.__dict__},
        )
        trainer = Trainer(out_dir, data, model_cfg, train_cfg, corpus_cfg, progress_bar=progress_bar)
    except Exception:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    runs.write_config(out_dir, config_record(model_cfg, train_cfg, corpus_cfg, preset=preset,
                                             sources=[str(p) for p in paths]))
    stats = summarize(text, vocab)
    log.info("Total Characters: %d", stats["total_characters"])
    log.info("Total Vocab: %d", stats["total_vocab"])
    if train_cfg.framing == "window":
        log.info("Total Patterns: %d", trainer.batches.num_patterns)
    else:
        log.info("Sequences: %d rows x %d batches of %d characters per epoch",
                 train_cfg.batch_size, len(trainer.batches), train_cfg.seq_len)
    log.info("Splits: %s", ", ".join(f"{k} {v}" for k, v in data.meta["sizes"].items()))
    log.info("Parameters: %d trainable", trainer.model.num_parameters())
    return trainer


def resume_run(
    run_dir: str | Path, *, overrides: dict[str, Any] | None = None, progress_bar: bool = True
) -> Trainer:
    """Rebuild a run's trainer from its ``last`` checkpoint, exactly where it stopped."""
    run_dir = Path(run_dir)
    last = run_dir / runs.LAST
    if not last.is_file():
        raise CheckpointError(f"{run_dir}: no {runs.LAST} to resume from")
    from charlstm.checkpoint import read_meta

    meta = read_meta(last)
    changed = set(overrides or {}) - RESUMABLE_FIELDS
    if changed:
        raise ConfigError(
            f"cannot change {', '.join(sorted(changed))} when resuming; only "
            f"{', '.join(sorted(RESUMABLE_FIELDS))} may change"
        )
    model_cfg = ModelConfig(**meta["model_config"])
    train_cfg = replace(TrainConfig(**meta["train_config"]), **(overrides or {}))
    corpus_cfg = CorpusConfig(**meta["corpus_config"])
    data = open_prepared(run_dir / runs.DATA_DIR)
    trainer = Trainer(run_dir, data, model_cfg, train_cfg, corpus_cfg, progress_bar=progress_bar)
    trainer.restore(last)
    log.info("resuming %s at step %d, epoch %d", run_dir, trainer.progress.step, trainer.progress.epoch + 1)
    return trainer


def train(
    sources: Sequence[str | Path] | None = None,
    *,
    out_dir: str | Path | None = None,
    resume: str | Path | None = None,
    preset: str = "default",
    progress_bar: bool = False,
    **overrides: Any,
) -> TrainResult:
    """Train a new run into ``out_dir``, or continue ``resume``; keyword overrides name config fields."""
    if resume is not None:
        return resume_run(resume, overrides=overrides, progress_bar=progress_bar).fit()
    if out_dir is None:
        raise ConfigError("give out_dir for a new run (or resume=RUN)")
    return start_run(sources, out_dir, preset=preset, overrides=overrides, progress_bar=progress_bar).fit()
