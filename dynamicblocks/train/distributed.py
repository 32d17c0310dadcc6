"""The process group of a ``torchrun`` launch (or a single process), as one small object."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from .._validate import real_number

__all__ = ["Distributed", "DEFAULT_TIMEOUT"]

#: Seconds a collective waits for the other ranks before it fails (see ``from_env``).
DEFAULT_TIMEOUT = 600.0


@dataclass(frozen=True)
class Distributed:
    """Where this process sits in the job: ``rank`` of ``world_size``, on ``device``."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        """True when there is more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that writes files and shows progress."""
        return self.rank == 0

    @classmethod
    def from_env(
        cls, device: str | torch.device | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> Distributed:
        """Join the process group that ``torchrun`` describes in the environment.

        Without ``WORLD_SIZE`` (or with ``WORLD_SIZE=1``) this is a single
        process on ``device`` (default: CUDA if available, else CPU). Under
        ``torchrun`` the backend is NCCL on CUDA and Gloo on CPU, and a CUDA
        device becomes ``cuda:LOCAL_RANK``.

        Args:
            device: where this process computes.
            timeout: seconds a collective operation waits for every rank; a
                stalled or dead rank then makes the others fail with an error
                instead of waiting forever.

        Raises:
            ValueError: if the environment's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``
                are not integers or are inconsistent, or ``timeout`` is not a
                positive number of seconds.
        """
        timeout = real_number(
            "timeout", timeout, "a positive number of seconds", 0.0, open_low=True
        )
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        world_size = _env_int("WORLD_SIZE", 1)
        if world_size <= 1:
            return cls(0, 1, device)
        rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
        if not 0 <= rank < world_size:
            raise ValueError(f"RANK must lie in [0, WORLD_SIZE={world_size}), got {rank}")
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(
                backend, rank=rank, world_size=world_size, timeout=timedelta(seconds=timeout)
            )
        return cls(rank, world_size, device)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over all ranks (in place; a no-op for a single process)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (``obj`` itself for a single process)."""
        if not self.enabled:
            return obj
        holder = [obj]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def barrier(self) -> None:
        """Wait for every rank (a no-op for a single process)."""
        if self.enabled:
            dist.barrier()

    def close(self, wait: bool = True) -> None:
        """Leave the process group (if one was joined), first waiting for every rank.

        After a failure pass ``wait=False``: the other ranks may never arrive.
        """
        if self.enabled and dist.is_initialized():
            if wait:
                dist.barrier()
            dist.destroy_process_group()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an int, got {value!r}") from None
