"""The two framings' batches: contiguous streams (state carried) and shuffled windows."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from charlstm.data.prepared import to_tensor
from charlstm.errors import CorpusError


class StreamBatches:
    """Contiguous (B, T) batches whose rows continue across batches (see module doc)."""

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, rank: int = 0, world_size: int = 1):
        # With several processes the text is cut into batch_size * world_size rows and each
        # process takes its own batch_size of them: disjoint text, the same batch count.
        self.batch_size, self.seq_len = batch_size, seq_len
        rows = batch_size * world_size
        self.row_len = (len(ids) - 1) // rows
        if self.row_len < seq_len:
            raise CorpusError(
                f"text of {len(ids)} characters is too short for {rows} rows of "
                f"{seq_len}+1 characters; lower --batch-size or --seq-len"
            )
        n = rows * self.row_len
        mine = slice(rank * batch_size, (rank + 1) * batch_size)
        # Views, not copies: slices of a memmap reshape without reading the file.
        self.inputs = ids[:n].reshape(rows, self.row_len)[mine]
        self.targets = ids[1 : n + 1].reshape(rows, self.row_len)[mine]

    def __len__(self) -> int:
        return self.row_len // self.seq_len

    def batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``k`` as (inputs, targets), each (B, T) int64."""
        cols = slice(k * self.seq_len, (k + 1) * self.seq_len)
        return to_tensor(self.inputs[:, cols]), to_tensor(self.targets[:, cols])

    def iterate(self, start: int = 0) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        for k in range(start, len(self)):
            yield (k, *self.batch(k))


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

    def iterate(self, epoch: int, start: int = 0) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        order = self.order(epoch)
        for k in range(start, len(self)):
            batch = order[k * self.global_batch : (k + 1) * self.global_batch]
            yield (k, *self.gather(batch[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]))
