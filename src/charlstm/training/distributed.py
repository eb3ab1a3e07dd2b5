"""Several processes, one model: PyTorch DDP when launched by torchrun.

``torchrun --nproc-per-node N -m charlstm train ...`` sets RANK, WORLD_SIZE and
LOCAL_RANK; a plain run has none of them and stays a single process with no
collective calls at all. Rank 0 alone writes files, logs and the progress bar.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from charlstm.errors import CharLSTMError


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def raise_rank0_failure(self, failure: CharLSTMError | None, error: type[CharLSTMError],
                            doing: str) -> None:
        """Every rank learns whether rank 0 failed at ``doing`` (a collective call): rank 0 raises
        its own error, the others ``error`` saying so, instead of waiting for it at the next call."""
        rank0_failure = self.gather_objects(str(failure) if failure else None)[0]
        if failure:
            raise failure
        if rank0_failure:
            raise error(f"rank 0 could not {doing}: {rank0_failure}")

    def gather_objects(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order (a one-item list without DDP)."""
        if not self.enabled:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    @property
    def device(self) -> torch.device:
        """Where collectives' tensors live: NCCL only moves GPU tensors."""
        if self.enabled and dist.get_backend() == "nccl":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a tensor over ranks (for logged losses)."""
        if not self.enabled:
            return value
        value = value.detach().to(self.device, copy=True)
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value / self.world_size


def from_environment() -> Distributed:
    """Join the process group torchrun set up, or run alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    if rank != 0:  # one voice: rank 0 logs for the run, the others only warn
        logging.getLogger("charlstm").setLevel(logging.WARNING)
    return Distributed(rank=rank, world_size=world_size, local_rank=local_rank)


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
