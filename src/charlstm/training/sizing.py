"""The ``auto`` preset: a model sized to the corpus, the budget and this machine, before step one.

What a character LSTM can learn in a fixed time is bounded twice: by the
characters it can read (compute) and by the characters there are (data). The
rule, measured on 2 CPU cores and written down in docs/benchmarks.md:

1. **Speed and precision** (time budgets only). A probe times about a second of
   training steps of a reference model in fp32 and, where the device has fast
   bfloat16 (CPUs with AMX or AVX512-BF16, GPUs since Ampere), under bf16
   autocast; bf16 is taken if it is at least ``BF16_GAIN`` times faster. Runs
   limited by steps or epochs keep fp32 and need no probe.
2. **Rows per batch.** The preset's, fewer for a text too short for ``MIN_BATCHES``
   batches per epoch. With a time budget the probe also times the narrower
   ``WIDTHS``, in turns with the preset's rows, and takes the fewest rows that keep
   ``WIDTH_SPEED`` of the fastest width's speed; evaluations then stay
   ``EVAL_CHARS`` training characters apart.
3. **The limit.** Given a time budget and no ``--epochs``, the budget alone
   stops the run (the default's 50-epoch cap is lifted).
4. **Planned characters.** C = probed characters/s x the time budget (scaled to
   each candidate by its FLOPs per character), or max_steps x batch x seq_len,
   or epochs x the training characters, whichever limit is given.
5. **Size.** The largest model of ``LADDER`` that still reads at least
   ``CHARS_PER_PARAM`` characters per parameter in C: a bigger model learns more
   per character, but one that reads too little of the text never catches up.
   With a time budget the pick is then timed itself and steps 4-5 run again with
   its measured speed, until the pick is a size that was timed: a model that
   outgrows the caches runs slower than its FLOPs say (2 x 768 read 0.72x the
   characters the scaling from 2 x 512 promised, on 2 CPU cores).
6. **Regularisation** by planned epochs E = C / training characters: the more
   often the text is seen, the more the model overfits, the more dropout.
   ``REGULARISATION`` gives dropout, weight drop and weight decay at a few epoch
   counts (none and the preset's weight decay 0.01 up to 3 epochs; dropout 0.1 at
   10; dropout 0.2, AWD-LSTM's weight drop 0.1 and weight decay 0.1 at 20; both
   dropouts 0.5 from 40), log-linear in between.

probe.py measures (``plan_run``: the preset's entry point); ``decide`` decides (steps 1-6, pure). Explicit
settings are never overridden; the plan is logged and written into config.json. The probe's
timings vary with the machine's load, so two runs may choose differently; config.json says what.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from charlstm.config.choices import Precision
from charlstm.config.model import ModelConfig
from charlstm.config.train import TrainConfig

# (num_layers, hidden_size), smallest first.
LADDER: tuple[tuple[int, int], ...] = ((1, 256), (2, 256), (2, 384), (2, 512), (2, 768), (3, 1024), (3, 1536))
SIZE_FIELDS = frozenset({"num_layers", "hidden_size"})
# On War and Peace (2 CPU cores) a size planned to read about 1 character per parameter lost to the
# next smaller one both at 5 minutes (2 x 512, 0.93: +0.042 nats/char) and at 30 (2 x 768, 1.07
# timed, 0.82 read: +0.032); the best read 2.8 and 5.2 (docs/benchmarks.md, the auto rule sections).
CHARS_PER_PARAM = 2.0
BF16_GAIN = 1.3
REFERENCE = (2, 512)
MIN_BATCHES = 10
# Rows per batch the probe may choose, and how much of the fastest width's speed a narrower one must
# keep: 16 rows read as fast as 64 in fp32 on 2 CPU cores and learnt far faster; 8 rows lost a
# fifth of the speed and learnt less (docs/benchmarks.md).
WIDTHS = (16, 32)
WIDTH_SPEED = 0.8
EVAL_CHARS = 200 * 64 * 64  # training characters between evaluations: the preset's 200 steps of 64 x 64
# (planned epochs, dropout, weight drop, AdamW weight decay), log-linear in the epochs between two
# rows: a text read three times or fewer learnt faster with no dropout at all (docs/benchmarks.md);
# one read 40 times needs AWD-LSTM's strong dropouts not to be memorised. Read about 20 times (Origin
# of Species, 30 minutes, 2 x 512), dropout 0.2 and weight drop 0.1 beat both 0.33 / 0.28 (still
# learning slowly at the end) and 0.1 / none (memorised), and weight decay 0.1 (the transformer
# baseline's) beat the preset's 0.01 by 0.075 (1.2327 against 1.3082). Weight decay 0.05 at 10
# epochs lies between the two and was not measured.
REGULARISATION = ((3.0, 0.0, 0.0, 0.01), (10.0, 0.1, 0.0, 0.05), (20.0, 0.2, 0.1, 0.1),
                  (40.0, 0.5, 0.5, 0.1))
REGULARISATION_FIELDS = (("dropout", 2), ("weight_drop", 2), ("weight_decay", 3))  # columns, digits


@dataclass(frozen=True)
class Speeds:
    """What the probes measured, in training characters/s; empty where the run's limit needs no speed."""

    by_precision: dict[str, float] = field(default_factory=dict)  # precision -> the reference model's
    by_rows: dict[int, float] = field(default_factory=dict)  # rows per batch -> its, in the chosen precision
    by_size: dict[str, float] = field(default_factory=dict)  # "2x768" -> its, in the chosen precision, rows


@dataclass(frozen=True)
class Plan:
    """What the auto preset chose, and from what: written to config.json under ``sizing``."""

    train_chars: int
    limit: str  # time_budget | max_steps | epochs: the limit that set the planned characters
    probe_chars_per_s: dict[str, float]  # precision -> characters/s of the reference model
    probe_rows_chars_per_s: dict[int, float]  # rows per batch -> its characters/s, in the chosen precision
    probe_sizes_chars_per_s: dict[str, float]  # "2x768" -> its characters/s, where a pick was timed itself
    planned_chars: int | None  # None: no limit was given
    planned_epochs: float | None
    chosen: dict[str, Any]  # only the fields the plan set; explicit settings are not here

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        settings = ", ".join(f"{k}={v}" for k, v in self.chosen.items()) or "nothing (all given)"
        speed = ", ".join([f"{k} {v:,.0f}" for k, v in self.probe_chars_per_s.items()]
                          + [f"{k} rows {v:,.0f}" for k, v in self.probe_rows_chars_per_s.items()]
                          + [f"{k} {v:,.0f}" for k, v in self.probe_sizes_chars_per_s.items()])
        planned = ("no limit" if self.planned_chars is None else
                   f"planned {self.planned_chars:,} characters read, {self.planned_epochs:.1f} epochs of "
                   f"{self.train_chars:,}, by {self.limit}")
        return f"auto preset: {settings} ({planned}" + (f"; probe chars/s: {speed})" if speed else ")")


def decide(model: ModelConfig, train: TrainConfig, speeds: Speeds, *, given: set[str],
           train_chars: int) -> Plan:
    """Steps 1-6 of the module's rule from measured ``speeds``: pure, no probe, no device. Speeds the
    run does not use are ignored: all without a time budget (or with max_steps), widths if batch given."""
    if not needs_speed(train):
        speeds = Speeds()
    widths = {} if "batch_size" in given else speeds.by_rows
    precision = choose_precision(train, speeds.by_precision, given)  # 1
    train = choose_rows(train, widths, given, train_chars)  # 2
    if train.time_budget is not None and "epochs" not in given:  # 3: the budget alone is the limit
        train = replace(train, epochs=None)
    speed = widths.get(train.batch_size) or speeds.by_precision.get(str(precision), 0.0)
    planned = functools.partial(planned_chars, reference=reference_of(model, given), train=train,
                                speed=speed, train_chars=train_chars, measured=speeds.by_size)  # 4
    size = choose_size(model, given, planned)  # 5
    chars, limit = planned(_sized(model, size))
    epochs = chars / max(train_chars, 1)
    chosen = {"num_layers": size[0], "hidden_size": size[1], **regularisation_for(epochs),  # 6
              "precision": str(precision), "batch_size": train.batch_size, "epochs": train.epochs,
              **({"eval_every": train.eval_every} if widths else {})}
    return Plan(train_chars=train_chars, limit=limit,
                probe_chars_per_s={k: round(v) for k, v in speeds.by_precision.items()},
                probe_rows_chars_per_s={k: round(v) for k, v in sorted(widths.items())},
                probe_sizes_chars_per_s={k: round(v) for k, v in speeds.by_size.items()},
                planned_chars=round(chars) if chars < float("inf") else None,
                planned_epochs=round(epochs, 2) if chars < float("inf") else None,
                chosen={k: v for k, v in chosen.items() if k not in given})


def choose_precision(train: TrainConfig, by_precision: dict[str, float], given: set[str]) -> Precision:
    """Step 1: bf16 if it reads ``BF16_GAIN`` times fp32's characters/s; unmeasured or given: kept."""
    if "precision" in given or not by_precision:
        return train.precision
    fast = by_precision.get(Precision.BF16, 0.0) >= BF16_GAIN * by_precision[Precision.FP32]
    return Precision.BF16 if fast else Precision.FP32


def choose_rows(train: TrainConfig, widths: dict[int, float], given: set[str],
                train_chars: int) -> TrainConfig:
    """Step 2: the preset's rows, fewer for a short text; with ``widths`` timed, the narrowest fast one."""
    if "batch_size" in given:
        return train
    rows = max(1, min(train.batch_size, train_chars // (train.seq_len * MIN_BATCHES)))
    if widths:
        fastest = max(widths.values())
        rows = min(r for r, speed in widths.items() if speed >= WIDTH_SPEED * fastest)
    train = replace(train, batch_size=rows)
    if not widths or "eval_every" in given:
        return train
    return replace(train, eval_every=max(1, round(EVAL_CHARS / (rows * train.seq_len))))


def planned_chars(candidate: ModelConfig, *, reference: ModelConfig, train: TrainConfig, speed: float,
                  train_chars: int, measured: dict[str, float] | None = None) -> tuple[float, str]:
    """Step 4: characters ``candidate`` reads before the run's limit (inf: none), and which limit;
    its ``measured`` speed where it was timed, else ``speed`` (the reference's) scaled by FLOPs."""
    if train.max_steps is not None:
        return float(train.max_steps * train.batch_size * train.seq_len), "max_steps"
    by_epochs = float("inf") if train.epochs is None else float(train.epochs * train_chars)
    if train.time_budget is not None:
        rate = (measured or {}).get(size_key(candidate))
        if rate is None:
            rate = speed * flops_per_char(reference) / flops_per_char(candidate)
        by_time = rate * train.time_budget
        if by_time < by_epochs:
            return by_time, "time_budget"
    return by_epochs, "epochs"


def choose_size(model: ModelConfig, given: set[str],
                planned: Callable[[ModelConfig], tuple[float, str]]) -> tuple[int, int]:
    """Step 5: the largest rung of ``LADDER`` that reads ``CHARS_PER_PARAM`` characters per parameter."""
    if given >= SIZE_FIELDS:
        return model.num_layers, model.hidden_size
    if SIZE_FIELDS & given:  # one given: the other as the default recipe has it
        return (model.num_layers if "num_layers" in given else REFERENCE[0],
                model.hidden_size if "hidden_size" in given else REFERENCE[1])
    if planned(_sized(model, REFERENCE))[0] == float("inf"):
        return REFERENCE  # no limit at all: the default recipe's size
    fits = [s for s in LADDER if planned(_sized(model, s))[0] >= CHARS_PER_PARAM * _params(_sized(model, s))]
    return fits[-1] if fits else LADDER[0]


def apply_choice(model: ModelConfig, train: TrainConfig,
                 chosen: dict[str, Any]) -> tuple[ModelConfig, TrainConfig]:
    """The configs with a plan's choices (fields of either config) set."""
    train_fields = {k: v for k, v in chosen.items() if hasattr(train, k)}
    return (replace(model, **{k: v for k, v in chosen.items() if k not in train_fields}),
            replace(train, **train_fields))


def regularisation_for(epochs: float) -> dict[str, float]:
    """Step 6: dropout, weight drop and weight decay for a run that reads its training text ``epochs``
    times."""
    x = math.log(min(max(epochs, REGULARISATION[0][0]), REGULARISATION[-1][0]))
    below, above = next((a, b) for a, b in itertools.pairwise(REGULARISATION) if x <= math.log(b[0]))
    t = (x - math.log(below[0])) / (math.log(above[0]) - math.log(below[0]))
    return {name: round(lo + t * (hi - lo), digits)
            for (name, digits), lo, hi in zip(REGULARISATION_FIELDS, below[1:], above[1:], strict=True)}


def flops_per_char(model: ModelConfig) -> int:
    """Multiply-adds per character of the recurrent layers and the head (the embedding is a lookup)."""
    H, L = model.hidden_size, model.num_layers
    rnn = 4 * H * (model.input_size + H) + 4 * H * (H + H) * (L - 1)
    return rnn + H * model.vocab_size


def needs_speed(train: TrainConfig) -> bool:
    return train.time_budget is not None and train.max_steps is None  # max_steps counts characters itself


def reference_of(model: ModelConfig, given: set[str]) -> ModelConfig:
    """The model the probes time: the given size, else ``REFERENCE``."""
    return _sized(model, (model.num_layers, model.hidden_size) if given >= SIZE_FIELDS else REFERENCE)


def size_key(model: ModelConfig) -> str:
    """'2x768': how a size is named in the plan's probe figures."""
    return f"{model.num_layers}x{model.hidden_size}"


def _sized(model: ModelConfig, size: tuple[int, int]) -> ModelConfig:
    return replace(model, num_layers=size[0], hidden_size=size[1])


def _params(model: ModelConfig) -> int:
    return flops_per_char(model) + model.vocab_size * model.embedding_size
