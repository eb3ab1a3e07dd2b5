"""Named recipes: each pins a whole setup (model, training, corpus cleaning).

Explicit settings override a preset's fields one by one; a preset never mixes
silently with anything else.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from charlstm.config.corpus import CorpusConfig
from charlstm.config.model import ModelConfig
from charlstm.config.train import TrainConfig
from charlstm.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    description: str
    model: ModelConfig
    train: TrainConfig
    corpus: CorpusConfig
    sized: bool = False  # the model is sized to the corpus and budget when the run starts


_TUTORIAL_MODEL = ModelConfig(
    input_encoding="scalar", hidden_size=256, num_layers=1, dropout=0.2, init="keras"
)
_TUTORIAL_TRAIN = TrainConfig(
    framing="window", seq_len=100, batch_size=128, epochs=20, optimizer="adam", lr=1e-3,
    beta2=0.999, adam_eps=1e-7, weight_decay=0.0, grad_clip=0.0, lr_schedule="constant",
    warmup_steps=0, val_fraction=0.0, eval_every=0, checkpoint_metric="train_loss",
    checkpoint_name="weights-improvement-{epoch:02d}-{loss:.4f}", shuffle=True,
)

TUTORIAL = Preset(
    description=(
        "The Keras tutorial's small network: LSTM(256) -> Dropout(0.2) -> Dense softmax on "
        "windows of 100 scaled ids, stride 1, one target each; Adam 1e-3 (eps 1e-7), batch 128, "
        "20 epochs, shuffled, lowercase, no held-out text, best-only checkpoints on training "
        "loss. Deliberate differences: Gutenberg markers strip the header and footer (the "
        "author deleted them by hand), and the text is decoded and newline-normalised, so the "
        "BOM bytes and '\\r' are not in the vocabulary; today's Keras sigmoid gates, not 2017's "
        "hard_sigmoid; checkpoints are .safetensors, not .hdf5."
    ),
    model=_TUTORIAL_MODEL,
    train=_TUTORIAL_TRAIN,
    corpus=CorpusConfig(lowercase=True),
)

TUTORIAL_LARGE = Preset(
    description=(
        "The Keras tutorial's larger network: LSTM(256) -> Dropout(0.2) -> LSTM(256) -> "
        "Dropout(0.2) -> Dense softmax, 50 epochs, batch 64, checkpoint names ending in "
        "'-bigger'; everything else and every difference as in 'tutorial'."
    ),
    model=replace(_TUTORIAL_MODEL, num_layers=2),
    train=replace(
        _TUTORIAL_TRAIN, epochs=50, batch_size=64,
        checkpoint_name="weights-improvement-{epoch:02d}-{loss:.4f}-bigger",
    ),
    corpus=CorpusConfig(lowercase=True),
)

DEFAULT = Preset(
    description=(
        "The efficient recipe: embedding input (64), 2 x LSTM(512), dropout 0.5, loss on every "
        "position of contiguous stream batches (32 rows x 128 characters) with the LSTM state "
        "carried across them (truncated BPTT), the last 10% held out, AdamW (lr 3e-3) with warmup "
        "and cosine decay, gradient clipping at 1. Sized by measurement for the lowest held-out "
        "loss on Alice within 5 minutes on 2 CPU cores."
    ),
    model=ModelConfig(),
    train=TrainConfig(),
    corpus=CorpusConfig(),
)

AUTO = Preset(
    description=(
        "The default when no preset is named: the `default` recipe (embedding input, stream "
        "batches with state carried, the last 10% held out, AdamW with warmup and cosine decay), "
        "with the model's size, dropout, weight decay and precision chosen before the first step from the "
        "training text's size, the run's limit (time budget, steps or epochs) and a short "
        "throughput probe on this machine; every explicit setting wins. The rule and the "
        "measurements behind it: docs/benchmarks.md."
    ),
    model=ModelConfig(),
    # Many short rows: on a CPU with bf16 matrix units the wide steps run faster per character, and
    # more, shorter BPTT steps learnt faster than 32 x 128 in 5 minutes (docs/benchmarks.md). With
    # a time budget the probe narrows the batch to 32 or 16 rows where that costs no speed; lr 8e-3
    # learnt faster than 5e-3 at 16 rows on both test texts.
    train=TrainConfig(batch_size=64, seq_len=64, lr=8e-3),
    corpus=CorpusConfig(),
    sized=True,
)

PRESETS: dict[str, Preset] = {
    "auto": AUTO,
    "default": DEFAULT,
    "tutorial": TUTORIAL,
    "tutorial-large": TUTORIAL_LARGE,
}

CONFIG_CLASSES = {"model": ModelConfig, "train": TrainConfig, "corpus": CorpusConfig}


def field_owner(name: str) -> str:
    """Which config ("model", "train" or "corpus") has a field called ``name``."""
    for owner, cls in CONFIG_CLASSES.items():
        if name in {f.name for f in fields(cls)}:
            return owner
    raise ConfigError(f"no setting called {name!r}")


def resolve(
    preset: str, overrides: dict[str, Any] | None = None
) -> tuple[ModelConfig, TrainConfig, CorpusConfig]:
    """The preset's configs with ``overrides`` (field name -> value) applied."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    chosen = PRESETS[preset]
    parts: dict[str, dict[str, Any]] = {"model": {}, "train": {}, "corpus": {}}
    for name, value in (overrides or {}).items():
        parts[field_owner(name)][name] = value
    return (
        replace(chosen.model, **parts["model"]),
        replace(chosen.train, **parts["train"]),
        replace(chosen.corpus, **parts["corpus"]),
    )
