"""Fine-tuning: a new run that starts from another run's weights, on new text.

The new run keeps the source's architecture, framing (and window length) and cleaning; the
user may change its regularisation, its training settings and its cleaning flags. The new text
is read with the ``encoding`` given for it (default utf-8), not with the source's. Training
settings start from the source's recipe, or from ``--preset`` when one is given; the optimizer
and schedule start afresh. The vocabulary is the source's, in its order, followed by the new
text's other characters (sorted); ``strict_vocab`` refuses those instead (model/growth.py says
how their weights start).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from charlstm import presets
from charlstm.config.corpus import CorpusConfig
from charlstm.config.model import ModelConfig
from charlstm.config.train import TrainConfig
from charlstm.data.vocab import Vocab
from charlstm.errors import ConfigError, CorpusError
from charlstm.model.growth import grown_state
from charlstm.runs.loading import LoadedModel, load_model

# What the weights are shaped by: a fine-tune cannot change them.
ARCHITECTURE = frozenset({"vocab_size", "cell", "input_encoding", "embedding_size", "hidden_size",
                          "num_layers", "init", "gate_activation"})


@dataclass(frozen=True)
class Source:
    """The run or checkpoint a fine-tune starts from."""

    loaded: LoadedModel

    @property
    def vocab(self) -> Vocab:
        return self.loaded.vocab

    def record(self, vocab: Vocab) -> dict[str, Any]:
        """What config.json says about the source."""
        return {"checkpoint": str(self.loaded.path.resolve()), "step": self.loaded.meta.progress.step,
                "added_characters": vocab.chars[len(self.vocab):]}


def open_source(path: str | Path) -> Source:
    """Load the best checkpoint of a run folder (or the checkpoint file given), on the CPU."""
    return Source(load_model(Path(path)))


def fine_tune_configs(source: Source, preset: str | None, overrides: dict[str, Any]
                      ) -> tuple[ModelConfig, TrainConfig, CorpusConfig]:
    """The new run's configs: the source's, with what the user may change changed."""
    meta = source.loaded.meta
    parts: dict[str, dict[str, Any]] = {"model": {}, "train": {}, "corpus": {}}
    for name, value in overrides.items():
        parts[presets.field_owner(name)][name] = value
    fixed = sorted(k for k, v in parts["model"].items()
                   if k in ARCHITECTURE and v != getattr(meta.model_config, k))
    if fixed:
        raise ConfigError(f"--init-from keeps the model's architecture: cannot change {', '.join(fixed)}")
    model_cfg = replace(meta.model_config, **parts["model"])
    # The cleaning carries over, but not the encoding: it said how the source's files were stored
    # (an imported Keras run's latin-1 is Python 2's bytes), nothing about the new text's.
    corpus_cfg = replace(meta.corpus_config, **{"encoding": CorpusConfig().encoding, **parts["corpus"]})
    base = presets.resolve(preset)[1] if preset else meta.train_config
    train_cfg = replace(base, **parts["train"])
    src = meta.train_config
    # The framing, and a window model's window, are how the model reads: they stay the source's.
    # (A stream model's seq_len is only how far gradients reach back: that may change.)
    carried = source.loaded.framing.carries_state
    keep = {"framing": src.framing, **({} if carried else {"seq_len": src.seq_len})}
    for name, value in keep.items():
        if name in parts["train"] and parts["train"][name] != value:
            raise ConfigError(f"--init-from keeps how the model reads text: {name} stays {value}")
    return model_cfg, replace(train_cfg, **keep), corpus_cfg


def check_vocab(source: Source, vocab: Vocab, *, strict: bool) -> None:
    """Refuse data whose ids do not start with the source's, or new characters under ``strict``."""
    old = source.vocab.chars
    if vocab.chars[: len(old)] != old:
        raise CorpusError("this prepared folder's vocabulary does not start with the model's; give the "
                          "text files instead, so charlstm encodes them with the model's vocabulary")
    added = vocab.chars[len(old):]
    if strict and added:
        shown = "".join(added[:20]).encode("unicode_escape").decode("ascii")
        raise CorpusError(f"the text has {len(added)} characters the model lacks ({shown!r}) and "
                          "--strict-vocab refuses them; clean them out, or drop --strict-vocab to add them")


def initial_weights(source: Source, vocab_size: int) -> dict[str, torch.Tensor]:
    """The source's weights, grown to ``vocab_size`` characters."""
    return grown_state(source.loaded.model, vocab_size)
