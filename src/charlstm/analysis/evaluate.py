"""How well a model predicts text: loss in nats/char, bits/char, perplexity."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from charlstm.config.corpus import CorpusConfig
from charlstm.data.prepared import open_prepared, to_tensor
from charlstm.data.sources import load_text
from charlstm.errors import ConfigError, CorpusError
from charlstm.model.loss import NATS_TO_BITS, char_loss
from charlstm.model.network import CharLSTM, detach_state
from charlstm.model.runtime import resolve_device
from charlstm.runs.folder import data_dir
from charlstm.runs.loading import load_model

EVAL_ROWS = 16  # parallel rows for stream scoring; each starts from a zero state
EVAL_CHUNK = 256  # characters per forward call; state carries between chunks


@dataclass(frozen=True)
class EvalResult:
    loss: float  # mean cross-entropy, nats per character
    characters: int  # how many predictions were scored

    @property
    def bits_per_char(self) -> float:
        return self.loss * NATS_TO_BITS

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss)

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "bits_per_char": self.bits_per_char, "perplexity": self.perplexity}


@torch.no_grad()
def evaluate_stream(
    model: CharLSTM, ids: np.ndarray, *, device: torch.device, max_chars: int | None = None
) -> EvalResult:
    """Score every position of ``ids`` with state carried, as a stream model reads.

    The text is cut into up to ``EVAL_ROWS`` contiguous rows scored in parallel;
    each row starts from a zero state, the same rule for every model.
    """
    if max_chars is not None:
        if max_chars < 1:
            raise ConfigError("max_chars must be at least 1")
        ids = ids[: max_chars + 1]
    if len(ids) < 2:
        raise CorpusError("need at least 2 characters to evaluate")
    rows = max(1, min(EVAL_ROWS, (len(ids) - 1) // 512))
    row_len = (len(ids) - 1) // rows
    n = rows * row_len
    # Views of the (memory-mapped) ids: each chunk is read when it is scored.
    inputs, targets = ids[:n].reshape(rows, row_len), ids[1 : n + 1].reshape(rows, row_len)
    was_training = model.training
    model.eval()
    state = model.init_state(rows, device)
    total = torch.zeros((), device=device, dtype=torch.float64)
    for start in range(0, row_len, EVAL_CHUNK):
        cols = slice(start, start + EVAL_CHUNK)
        x, y = to_tensor(inputs[:, cols]).to(device), to_tensor(targets[:, cols]).to(device)
        logits, state = model(x, state)  # (rows, chunk, V)
        state = detach_state(state)
        total += char_loss(logits, y).double() * y.numel()
    model.train(was_training)
    return EvalResult(loss=float(total) / n, characters=n)


@torch.no_grad()
def evaluate_windows(
    model: CharLSTM,
    ids: np.ndarray,
    *,
    seq_len: int,
    device: torch.device,
    batch_size: int = 256,
    max_windows: int | None = None,
) -> EvalResult:
    """Score the id after each window of ``seq_len``, as a window (tutorial) model reads.

    With ``max_windows``, an evenly spaced subset of the windows is scored.
    """
    if max_windows is not None and max_windows < 1:
        raise ConfigError("max_windows must be at least 1")
    num_windows = len(ids) - seq_len
    if num_windows < 1:
        raise CorpusError(f"need more than {seq_len} characters to evaluate a window model")
    starts = np.arange(num_windows)
    if max_windows is not None and max_windows < num_windows:
        starts = np.linspace(0, num_windows - 1, max_windows).astype(np.int64)
    offsets = np.arange(seq_len)
    was_training = model.training
    model.eval()
    total = 0.0
    for begin in range(0, len(starts), batch_size):
        batch_starts = starts[begin : begin + batch_size]
        x = to_tensor(ids[batch_starts[:, None] + offsets]).to(device)  # (B, T)
        y = to_tensor(ids[batch_starts + seq_len]).to(device)  # (B,)
        logits, _ = model(x)
        total += float(char_loss(logits[:, -1], y)) * len(batch_starts)
    model.train(was_training)
    return EvalResult(loss=total / len(starts), characters=len(starts))


def evaluate(
    model: CharLSTM, ids: np.ndarray, *, framing: str, seq_len: int, device: torch.device,
    max_chars: int | None = None,
) -> EvalResult:
    """Score ``ids`` with the model's own framing (``stream`` or ``window``)."""
    if framing == "window":
        return evaluate_windows(model, ids, seq_len=seq_len, device=device, max_windows=max_chars)
    return evaluate_stream(model, ids, device=device, max_chars=max_chars)


def score_run(
    run: Path, texts: list[Path] | None = None, *, split: str = "val", unknown: str = "error",
    replacement: str | None = None, device: str = "cpu",
) -> EvalResult:
    """Score a run's best checkpoint on its held-out ``split`` or on the given text files."""
    loaded = load_model(Path(run), resolve_device(device))
    if texts:
        text = load_text(texts, CorpusConfig(**loaded.meta["corpus_config"]))
        ids = loaded.vocab.encode(text, unknown, replacement)
    else:
        if split not in ("val", "test"):
            raise ConfigError(f"split must be val or test, not {split!r}")
        run_dir = loaded.run_dir
        if run_dir is None or not data_dir(run_dir).is_dir():
            raise CorpusError(f"{run}: no data folder beside the checkpoint; pass a TEXT to score")
        ids = open_prepared(data_dir(run_dir)).split(split)
        if len(ids) == 0:
            raise CorpusError(
                f"{run}: this run has no {split} split (its preset holds no text out); pass a TEXT"
            )
    return evaluate(loaded.model, ids, framing=loaded.framing, seq_len=loaded.seq_len,
                    device=loaded.model.head.weight.device)
