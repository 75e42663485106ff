"""Data-parallel training on PyTorch DDP, launched by torchrun (gloo on CPU, NCCL on GPU).

Every rank walks the same seeded global batch order and takes an interleaved share of each global batch,
so the effective batch size, the augmentation draws and the gradient (rescaled below) are those of a
single-process run: results agree up to floating-point summation order (dropout and BatchNorm statistics
are per rank, so models with them agree statistically rather than to the last digit).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def sum(self, values: list[float]) -> list[float]:
        """All-reduce a few scalars by summation (float64 so counts stay exact)."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def all_gather(self, t: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's copy of `t` (same shape and dtype on all ranks), by rank, on the CPU (a single process gets
        `[t]` back as it is). NCCL moves tensors through the GPU, so there `t` travels through this process's GPU."""
        if not self.enabled:
            return [t]
        via = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
        src = t.to(via)
        out = [torch.empty_like(src) for _ in range(self.world)]
        dist.all_gather(out, src)
        return [o.cpu() for o in out]

    def shard(self, items):
        """This rank's interleaved share of a sequence (rank, rank + world, ...)."""
        return items[self.rank :: self.world] if self.enabled else items


def init_from_env(device: torch.device) -> DistContext:
    """Join the process group torchrun describes in the environment; a no-op for a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistContext(rank, world, local_rank)


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
