"""Window framing (the Keras tutorial): every window of T ids, stride 1, predicts the id after it.

Windows are shuffled each epoch and read from a zero state, in training, in evaluation and
in generation, where the last ``seq_len`` characters are re-read for every new character.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from charlstm.config.choices import FramingName
from charlstm.data.prepared import to_tensor
from charlstm.errors import ConfigError, CorpusError
from charlstm.framing.base import Batch, Framing, progress_bar
from charlstm.model.loss import EvalResult, char_loss
from charlstm.model.network import CharLSTM, State, evaluating


class WindowFraming(Framing):
    """Windows of ``seq_len`` ids, one target each, no state between them."""

    name = FramingName.WINDOW
    announces_default_prompt = True
    single_steps = False  # each step re-reads a whole window: intra-op threads help it

    def batches(self, ids: np.ndarray, batch_size: int, *, seed: int, shuffle: bool, rank: int = 0,
                world_size: int = 1) -> WindowBatches:
        return WindowBatches(ids, batch_size, self.seq_len, seed, shuffle, rank=rank, world_size=world_size)

    def loss(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
             state: State | None) -> tuple[torch.Tensor, State | None]:
        logits, _ = model(x)  # (B, T, V); the tutorial predicts after the window only
        return char_loss(logits[:, -1], y), None

    def evaluate(self, model: CharLSTM, ids: np.ndarray, *, device: torch.device,
                 max_chars: int | None = None, progress: bool = False) -> EvalResult:
        return evaluate_windows(model, ids, seq_len=self.seq_len, device=device, max_windows=max_chars,
                                progress=progress)

    def reader(self, model: CharLSTM, prompt: torch.Tensor, rows: int) -> WindowReader:
        return WindowReader(model, prompt, rows, self.seq_len)

    @property
    def sample_prompt_length(self) -> int:
        return self.seq_len  # a window model needs a whole window


class WindowBatches:
    """Shuffled batches of (window, next id) pairs, the Keras tutorial's framing.

    The order of epoch e is a permutation drawn from ``(seed, e)``, so a resumed
    run finds the same order from the epoch and batch counters alone. Windows
    are gathered per batch; the (patterns, T) array is never built.
    """

    def __init__(
        self, ids: np.ndarray, batch_size: int, seq_len: int, seed: int, shuffle: bool = True,
        rank: int = 0, world_size: int = 1,
    ):
        self.ids = ids  # the memmap itself: each batch reads only its windows
        self.batch_size, self.seq_len, self.seed, self.shuffle = batch_size, seq_len, seed, shuffle
        self.num_patterns = len(ids) - seq_len
        if self.num_patterns < 1:
            raise CorpusError(
                f"text of {len(ids)} characters is shorter than one window of {seq_len}+1"
            )
        self.offsets = np.arange(seq_len)
        # Every process draws the same order; each takes its share of every global batch.
        self.rank, self.world_size = rank, world_size
        self.global_batch = batch_size * world_size

    def __len__(self) -> int:
        if self.world_size > 1:  # a short last batch could leave a process with nothing: dropped
            return max(1, self.num_patterns // self.global_batch)
        return -(-self.num_patterns // self.batch_size)  # the last batch may be short, as in Keras

    def order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.num_patterns)
        rng = np.random.default_rng([self.seed, epoch])
        return torch.from_numpy(rng.permutation(self.num_patterns))

    def gather(self, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows beginning at ``starts``: inputs (B, T) and next ids (B,)."""
        starts_np = starts.numpy()
        index = starts_np[:, None] + self.offsets  # (B, T)
        return to_tensor(self.ids[index]), to_tensor(self.ids[starts_np + self.seq_len])

    def describe(self) -> str:
        return f"Total Patterns: {self.num_patterns}"  # the tutorial's own line

    def iterate(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        order = self.order(epoch)
        for k in range(start, len(self)):
            batch = order[k * self.global_batch : (k + 1) * self.global_batch]
            yield (k, *self.gather(batch[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]))


@torch.no_grad()
def evaluate_windows(
    model: CharLSTM,
    ids: np.ndarray,
    *,
    seq_len: int,
    device: torch.device,
    batch_size: int = 256,
    max_windows: int | None = None,
    progress: bool = False,
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
    with evaluating(model):
        total = 0.0
        for begin in progress_bar(range(0, len(starts), batch_size), progress, unit_scale=batch_size):
            batch_starts = starts[begin : begin + batch_size]
            x = to_tensor(ids[batch_starts[:, None] + offsets]).to(device)  # (B, T)
            y = to_tensor(ids[batch_starts + seq_len]).to(device)  # (B,)
            logits, _ = model(x)
            total += float(char_loss(logits[:, -1], y)) * len(batch_starts)
    return EvalResult(loss=total / len(starts), characters=len(starts))


class WindowReader:
    """The last ``seq_len`` characters, re-read from a zero state for every new one.

    ``logits`` is computed when read, so advancing past the last character costs nothing.
    """

    def __init__(self, model: CharLSTM, prompt: torch.Tensor, rows: int, seq_len: int):
        self.model, self.seq_len = model, seq_len
        device = model.head.weight.device
        self.window = prompt[-seq_len:].to(device)[None, :].expand(rows, -1)  # (B, W)
        self._logits: torch.Tensor | None = None

    @property
    def logits(self) -> torch.Tensor:
        if self._logits is None:
            logits, _ = self.model(self.window)  # (B, W, V), from a zero state as in training
            self._logits = logits[:, -1]
        return self._logits

    def advance(self, ids: torch.Tensor) -> None:
        keep_from = 1 if self.window.shape[1] >= self.seq_len else 0
        self.window = torch.cat([self.window[:, keep_from:], ids[:, None]], 1)
        self._logits = None
