"""Processes and devices: torchrun/DDP setup (gloo on CPU, NCCL on GPU), sums and barriers.

Which images each process reads is vitlab.data.sampler's: a pure function of (seed, epoch, step, k).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..utils.device import pick_device


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: str) -> Dist:
    """Join the process group torchrun describes in the environment (or run as a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    dev = pick_device(device, local_rank)
    if dev.type == "cuda" and device == "auto":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
    return Dist(rank, world, local_rank, local_world, dev)


def teardown(d: Dist, agreed: bool) -> None:
    """Leave the process group. ``agreed``: every process got here the same way (finished, stopped by a
    signal, or a non-finite loss), so they can meet at a final barrier first.

    Why the barrier: ``destroy_process_group`` does not stop gloo's worker threads while anything else
    still references the group (after a DDP wrapper or an optimizer step something does, in torch 2.13),
    so they run on into interpreter shutdown. A worker drops the tensors of a collective a moment after the
    caller sees it complete; when the process is already finalizing Python by then, freeing a tensor that
    has a Python object needs the GIL, the thread is unwound and C++ aborts: ``terminate called without
    an active exception`` (SIGABRT). Rank 1 exits right after its last collective (the test evaluation)
    while rank 0 writes the outputs, so on a busy machine it could lose that race. After a barrier the
    last work is the barrier's, which holds no Python tensor, and every earlier one was released while the
    other process was still working.
    """
    if not dist.is_initialized():
        return
    if agreed and d.world > 1:
        dist.barrier()
    dist.destroy_process_group()


def all_sum(t: torch.Tensor, d: Dist) -> torch.Tensor:
    """Sum over processes (in place, returned); a no-op for one process."""
    if d.world > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier(d: Dist) -> None:
    if d.world > 1:
        dist.barrier()


def all_gather_objects(obj: object, d: Dist) -> list:
    """Every process's ``obj`` (picklable), in rank order; ``[obj]`` for one process."""
    if d.world == 1:
        return [obj]
    out: list = [None] * d.world
    dist.all_gather_object(out, obj)
    return out
