"""How many threads torch's CPU ops use while generating: the one place this is decided.

The library's generators, the service's batched scheduler and its per-request path all ask
here. A single step at small batch is a few microseconds of work per op: splitting it across
threads costs more in hand-offs than it gains (about 7% slower at batch 1 on 2 cores), while
many rows gain from every core (64 rows of 2 x 512 step 1.6x faster on 2 cores).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

SMALL_STEP = 4096  # batch x hidden size up to which a single step runs on one thread


def step_threads(rows: int, hidden_size: int, most: int) -> int:
    """Threads for one single step of ``rows`` rows of ``hidden_size`` units: 1 if small, else ``most``."""
    return 1 if rows * hidden_size <= SMALL_STEP else most


def server_threads(batching: bool) -> int | None:
    """The thread count a server starts torch with when none is asked for; None keeps torch's.

    Batching: torch's own, as each scheduler picks per step (``step_threads``) and reads its
    prompts on all. A thread per generation (the per-request path): one, as each generation is
    a chain of tiny ops and the threads of several fight over the cores (measured: the first
    requests ran 10-50x slower with two threads on a busy two-core machine).
    """
    return None if batching else 1


def use_threads(count: int) -> None:
    """Set torch's intra-op thread count, only when it changes (a set is not free)."""
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)


@contextlib.contextmanager
def intra_op_threads(count: int) -> Iterator[None]:
    """Run torch's CPU ops on ``count`` threads inside the block, then restore the setting."""
    before = torch.get_num_threads()
    use_threads(count)
    try:
        yield
    finally:
        use_threads(before)
