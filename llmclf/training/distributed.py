"""DistributedDataParallel under ``torchrun``: the process group, the rank's device, collectives.

Without torchrun's environment (``WORLD_SIZE`` unset or 1) everything here is a no-op, so the
Trainer has a single code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from ..errors import ConfigError

DEFAULT_TIMEOUT_S = 300  # a rank stuck in a collective gives up after this


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ----- collectives (no-ops on one process) -----------------------------------------------
    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def max_abs_difference(self, tensors: list[torch.Tensor]) -> float:
        """Largest difference between this rank's tensors and rank 0's (0.0 on one process)."""
        if not self.enabled:
            return 0.0
        flat = torch.cat([t.detach().float().reshape(-1).cpu() for t in tensors])
        reference = flat.clone()
        dist.broadcast(reference, src=0)
        diff = torch.tensor([(flat - reference).abs().max().item() if len(flat) else 0.0])
        dist.all_reduce(diff, op=dist.ReduceOp.MAX)
        return float(diff.item())


def setup(device_name: str) -> tuple[DistContext, str]:
    """Join the torchrun process group when there is one; return the context and the device.

    nccl with one CUDA device per rank, gloo on CPU.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext(), device_name
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name in ("auto", "cuda") and torch.cuda.is_available()
    if device_name == "cuda" and not use_cuda:
        raise ConfigError("device: cuda is not available here; use --device cpu or auto")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device_name = f"cuda:{local_rank}"
    elif device_name == "auto":
        device_name = "cpu"
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            timeout=timedelta(seconds=DEFAULT_TIMEOUT_S),
        )
    return DistContext(rank, world_size, local_rank), device_name


def teardown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
