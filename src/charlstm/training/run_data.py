"""A new run's data: a prepared folder used in place, or text (or a list of items) prepared into
RUN/data by rank 0 and opened by the others; and the framing a list of items dictates."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from charlstm.config.corpus import CorpusConfig
from charlstm.config.train import TrainConfig
from charlstm.data.prepare import prepare_corpus
from charlstm.data.prepare_items import prepare_items
from charlstm.data.prepared import META_FILE, PreparedData, open_prepared
from charlstm.errors import CharLSTMError, ConfigError, CorpusError
from charlstm.framing import ItemFraming, framing_for
from charlstm.runs import folder as runs
from charlstm.training import distributed, finetune

log = logging.getLogger(__name__)


def prepare_data(paths: list[Path], out_dir: Path, corpus_cfg: CorpusConfig, train_cfg: TrainConfig,
                  progress_bar: bool, prepare: bool = True, source: finetune.Source | None = None,
                  ) -> tuple[PreparedData, CorpusConfig, str]:
    """The run's data: a prepared folder used in place, or texts prepared into RUN/data.

    With ``prepare`` off (the other processes of a distributed run) RUN/data is only opened.
    """
    if len(paths) == 1 and (paths[0] / META_FILE).is_file():
        data = open_prepared(paths[0])
        prepared_with = data.corpus_config or CorpusConfig()
        if prepared_with != corpus_cfg and prepare:
            log.warning("using the data folder's cleaning (%s), not the preset's", prepared_with)
        return data, prepared_with, str(paths[0].resolve())
    if not prepare:
        return open_prepared(out_dir / runs.DATA_DIR), corpus_cfg, runs.DATA_DIR
    base_vocab = source.vocab if source else None
    if corpus_cfg.records is not None:  # a list of things: split by item (data.items)
        data = prepare_items(paths, out_dir / runs.DATA_DIR, corpus=corpus_cfg,
                             val_fraction=train_cfg.val_fraction, test_fraction=train_cfg.test_fraction,
                             seed=train_cfg.seed, progress_bar=progress_bar, base_vocab=base_vocab,
                             base_items=source.loaded.meta.items if source else None)
    else:
        data = prepare_corpus(paths, out_dir / runs.DATA_DIR, corpus=corpus_cfg,
                              val_fraction=train_cfg.val_fraction, test_fraction=train_cfg.test_fraction,
                              progress_bar=progress_bar, base_vocab=base_vocab)
    return data, corpus_cfg, runs.DATA_DIR


def shared_data(paths: list[Path], out_dir: Path, corpus_cfg: CorpusConfig, train_cfg: TrainConfig,
                 source: finetune.Source | None, progress_bar: bool,
                 dist: distributed.Distributed) -> tuple[PreparedData, CorpusConfig, str]:
    """Rank 0 prepares the data (and checks a fine-tune's vocabulary); the others then open it."""
    failure, prepared = None, None
    if dist.is_main:
        try:
            prepared = prepare_data(paths, out_dir, corpus_cfg, train_cfg, progress_bar, source=source)
            if source is not None:
                finetune.check_vocab(source, prepared[0].vocab, strict=train_cfg.strict_vocab)
        except CharLSTMError as exc:
            failure = exc
    dist.raise_rank0_failure(failure, CorpusError, "prepare the data")
    if prepared is None:
        prepared = prepare_data(paths, out_dir, corpus_cfg, train_cfg, False, prepare=False)
    return prepared


def framing_for_data(train_cfg: TrainConfig, data: PreparedData, *, given: set[str]) -> TrainConfig:
    """A list of items trains in the items framing, and only a list does."""
    reads_items = framing_for(train_cfg).reads_items
    if data.items is None:
        if reads_items:
            raise ConfigError(f"framing {train_cfg.framing} needs a list of things: set records (lines, "
                              "csv, ...)", hint="--records lines")
        return train_cfg
    if "framing" in given and not reads_items:
        raise ConfigError(f"a list of items trains in the items framing, not {train_cfg.framing}")
    return replace(train_cfg, framing=ItemFraming.name)
