"""``charlstm train`` and ``charlstm prepare``: the model, training and corpus settings as flags."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from tqdm.contrib.logging import logging_redirect_tqdm

from charlstm import presets
from charlstm.cli.console import console_level
from charlstm.cli.options import config_flags
from charlstm.config.corpus import CorpusConfig
from charlstm.config.model import ModelConfig
from charlstm.config.train import TrainConfig
from charlstm.errors import ConfigError
from charlstm.training import session as api

# prepare splits the text, so it takes the two split settings besides the corpus ones (and the
# seed, which draws a list's held-out items).
_SPLITS = ("val_fraction", "test_fraction")
PREPARE_SETTINGS = frozenset({f.name for f in dataclasses.fields(CorpusConfig)} | {*_SPLITS, "seed"})


@config_flags(ModelConfig, TrainConfig, CorpusConfig, preset_defaults=True)
def train(
    text: Annotated[
        list[Path] | None, typer.Argument(help="Text files or folders of .txt (default: the bundled Alice).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="New run folder.")] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue this run folder from its last checkpoint.")
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(help=f"One of: {', '.join(presets.PRESETS)}. Default: auto, sized to text and budget "
                     "(with --init-from: the source run's settings)."),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar.")] = True,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace --out if it holds a run that died before its first checkpoint.")
    ] = False,
    **settings: Any,
) -> None:
    """Train a model (new run with --out, or --resume RUN); settings not given keep the preset's."""
    if resume is not None and (text or out or preset or overwrite):
        raise ConfigError("--resume takes no TEXT, --out, --preset or --overwrite: the run folder has them")
    if resume is None and out is None:
        raise ConfigError("give --out RUN_FOLDER for a new run (or --resume RUN)")
    with logging_redirect_tqdm():  # log lines print above the progress bar, not through it
        console_level(logging.getLogger().level)
        result = api.train(text, out_dir=out, resume=resume, preset=preset,
                           progress_bar=progress, overwrite=overwrite, **settings)
    if not result.is_main:  # one voice: the other processes of a torchrun launch stay quiet
        return
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in result.last_eval.items() if "loss" in k or "bits" in k)
    typer.echo(f"trained {result.progress.step} steps ({result.stop_reason}); {metrics}", err=True)
    if result.stop_reason == "interrupted":
        typer.echo(f"stopped by Ctrl-C; continue with: charlstm train --resume {result.run_dir}", err=True)


@config_flags(CorpusConfig, TrainConfig, only=PREPARE_SETTINGS)
def prepare(
    text: Annotated[list[Path], typer.Argument(help="Text files or folders of .txt.")],
    out: Annotated[Path, typer.Option(help="New data folder (train.bin, val.bin, meta.json).")],
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar.")] = True,
    force: Annotated[bool, typer.Option("--force", help="Write into a folder that is not empty.")] = False,
    **settings: Any,
) -> None:
    """Clean and encode a corpus of any size into token files that `train` reads from disk."""
    from charlstm.data.prepare import prepare_corpus
    from charlstm.data.prepare_items import prepare_items
    from charlstm.runs.folder import check_outside_runs

    check_outside_runs(out)  # even --force: a run's data is what its checkpoints were trained on
    splits = {name: settings.pop(name, getattr(TrainConfig, name)) for name in _SPLITS}
    seed = settings.pop("seed", TrainConfig.seed)
    corpus = CorpusConfig(**settings)
    # Both log the summary (sizes, vocabulary, items): said once, not echoed.
    if corpus.records is not None:
        prepare_items(text, out, corpus=corpus, seed=seed, progress_bar=progress, force=force, **splits)
    else:
        prepare_corpus(text, out, corpus=corpus, progress_bar=progress, force=force, **splits)
