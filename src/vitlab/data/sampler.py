"""Which images a micro-batch holds, and the seed of everything random in it: pure functions of numbers.

The data order of an epoch is a permutation drawn from (seed, epoch); optimizer step s of an epoch
takes the next ``batch_size`` images of it, cut into micro-batches k = 0, 1, ... (k = accumulation
step x processes + rank). Each micro-batch, and each sample j in it, has a random stream seeded by
(seed, s, k[, j]). Nothing here depends on the number of processes, DataLoader workers or where a run
was resumed, so no sampler state is saved and a resumed run (or one on 2 processes instead of 1 with 2
accumulation steps) reads and computes exactly what an uninterrupted one does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch


def mix_seed(*xs: int) -> int:
    """A well-spread 63-bit seed from integers (splitmix64 steps), for independent streams."""
    h = 0x9E3779B97F4A7C15
    for x in xs:
        h = (h ^ (int(x) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h = (h ^ (h >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of the n training images used in ``epoch`` (same on every process)."""
    g = torch.Generator().manual_seed(mix_seed(seed, epoch, 0x5EED))
    return torch.randperm(n, generator=g)


def micro_batch_indices(order: torch.Tensor, step_in_epoch: int, global_batch: int, micro: int, k: int) -> torch.Tensor:
    """Image indices of micro-batch ``k`` (of global_batch // micro) of a step in the epoch."""
    start = step_in_epoch * global_batch + k * micro
    return order[start : start + micro]


def stream_seed(seed: int, step: int, k: int) -> int:
    """Seed of the random stream (augmentation, mixup, dropout) of micro-batch k at optimizer step ``step``."""
    return mix_seed(seed, step, k, 0xA11C)


def sample_seed(seed: int, step: int, k: int, j: int) -> int:
    """Seed of sample j of micro-batch k at ``step``: its crop and flip, drawn in whichever worker reads it."""
    return mix_seed(seed, step, k, j, 0x5A3E)


@dataclass(frozen=True)
class MicroBatch:
    """One micro-batch to read: where it sits in the run and the rows of the source it holds."""

    step: int
    k: int
    epoch: int
    rows: torch.Tensor


@dataclass(frozen=True)
class StepGrid:
    """The step arithmetic every data order shares, fixed before step 0: ``n`` training images, ``steps_per_epoch``
    steps of ``batch_size`` images, ``total_steps`` in all, each step ``accum`` micro-batches of ``micro`` images
    on each of ``world`` processes; ``rank`` is this process; ``seed`` seeds every order and draw."""

    n: int
    seed: int
    steps_per_epoch: int
    total_steps: int
    batch_size: int
    micro: int
    accum: int
    world: int
    rank: int

    def ks(self) -> range:
        """This process's micro-batch numbers within a step, in the order it trains on them."""
        return range(self.rank, self.accum * self.world, self.world)


@dataclass(frozen=True)
class BatchSchedule(StepGrid):
    """The micro-batches of a run for one process in the global order: one permutation of all ``n`` images an
    epoch (``epoch_order``), cut along the grid."""

    def at(self, step: int, k: int, order: torch.Tensor | None = None) -> MicroBatch:
        epoch, in_epoch = divmod(step, self.steps_per_epoch)
        order = epoch_order(self.n, self.seed, epoch) if order is None else order
        return MicroBatch(step, k, epoch, micro_batch_indices(order, in_epoch, self.batch_size, self.micro, k))

    def iterate(self, start_step: int) -> Iterator[MicroBatch]:
        """This process's micro-batches from ``start_step`` to the end, in training order (one permutation
        per epoch is drawn; skipped steps are never read)."""
        order, order_epoch = None, -1
        for step in range(start_step, self.total_steps):
            epoch = step // self.steps_per_epoch
            if epoch != order_epoch:
                order, order_epoch = epoch_order(self.n, self.seed, epoch), epoch
            for k in self.ks():
                yield self.at(step, k, order)
