"""The shard-sequential data order: which samples each reader (a DataLoader worker of a process) reads in
an epoch, and in which order, as a function of (seed, epoch, world size, workers) alone.

The rule. Each epoch the shards are shuffled by (seed, epoch) and laid end to end into one stream; the
global readers g = rank x workers + worker each take the next contiguous stretch of it, of exactly the
samples they will hand out this epoch (their micro-batches x micro), so a reader reads a run of whole
shards from one position on (sequential reads, few open files), and the epoch's last
``n - steps_per_epoch x batch_size`` samples of the stream (fewer than a batch; others each epoch, as
the shard order changes) are left out, as the global order leaves out the tail of its permutation.
Within its stretch a reader's samples are shuffled by a buffer of ``buffer`` samples (WebDataset's
shuffle buffer, seeded by (seed, epoch, reader)): reads stay within a window of that many samples.

Micro-batch q = step x accum + a of a process (k = a x world + rank) is read by its worker q mod workers,
because a DataLoader hands its items to the workers in turn: in a run that starts at step 0 each worker
reads exactly its own stretch (after a resume at a step where q is not a multiple of workers, the workers
read each other's stretches; which samples a micro-batch holds does not change). Nothing else is saved:
a run resumed with the same world size and workers continues with the exact next sample (the steps
before it are never read). With another world size or worker count the partition is another one: the
resumed run continues from the same step with the new one, so the rest of that epoch may repeat or miss
samples, and later epochs are whole again. Unlike vitlab.data.sampler's global order, the samples of a
step depend on the world size, so 2 processes do not compute what 1 process with 2 accumulation steps does.
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch

from .base import Source
from .sampler import BatchSchedule, MicroBatch, StepGrid, mix_seed

DEFAULT_BUFFER = 8192  # samples in each reader's shuffle buffer (timm's WebDataset reader's size)
ORDERS = ("auto", "global", "shards")  # data.shard_order


def _count(lo: int, hi: int, w: int, p: int) -> int:
    """How many integers x in [lo, hi) have x mod p == w."""
    return (hi - w - 1) // p - (lo - w - 1) // p


def buffer_shuffle(items: np.ndarray, size: int, seed: int) -> np.ndarray:
    """`items` in the order a shuffle buffer of `size` hands them out: fill it, then for each next item
    emit a random slot and put the item there; at the end emit the rest in random order."""
    g = torch.Generator().manual_seed(seed)
    size = max(1, min(size, len(items)))
    picks = torch.randint(0, size, (max(0, len(items) - size),), generator=g).tolist()
    buf, out = items[:size].tolist(), []
    for x, j in zip(items[size:].tolist(), picks):
        out.append(buf[j])
        buf[j] = x
    out += [buf[j] for j in torch.randperm(len(buf), generator=g).tolist()]
    return np.asarray(out, dtype=np.int64)


class ShardSchedule:
    """The micro-batches of a run for one process, read shard by shard (see the module docstring).

    ``shard``: the shard of each training row (ShardSource.shard); ``grid``: the run's StepGrid (its ``n`` is
    ``len(shard)``); ``workers``: DataLoader workers a process (0 counts as 1, the process itself); ``buffer``:
    each reader's shuffle buffer. ``ShardSchedule.on(grid, shard, workers)`` builds it from a run's grid; the
    constructor takes the grid's fields in order after ``shard`` (as BatchSchedule takes them after ``n``)."""

    def __init__(self, shard: np.ndarray, seed: int, steps_per_epoch: int, total_steps: int, batch_size: int,
                 micro: int, accum: int, world: int, rank: int, workers: int, buffer: int = DEFAULT_BUFFER) -> None:
        self.grid = StepGrid(len(shard), seed, steps_per_epoch, total_steps, batch_size, micro, accum, world, rank)
        self.workers, self.buffer = max(1, workers), buffer
        if steps_per_epoch * batch_size > self.grid.n:
            raise ValueError(f"{steps_per_epoch} steps x batch {batch_size} need more than the {self.grid.n} samples")
        shard = np.asarray(shard, dtype=np.int64)
        self._rows = np.argsort(shard, kind="stable")  # rows grouped by shard, each shard in its own order
        self._len = np.bincount(shard, minlength=int(shard.max(initial=-1)) + 1)
        self._start = np.concatenate([[0], np.cumsum(self._len)[:-1]]).astype(np.int64)
        self._used = np.flatnonzero(self._len)  # shards that hold training rows

    @classmethod
    def on(cls, grid: StepGrid, shard: np.ndarray, workers: int, buffer: int = DEFAULT_BUFFER) -> ShardSchedule:
        """The schedule of ``grid`` (whose ``n`` must be ``len(shard)``) read shard by shard."""
        if grid.n != len(shard):
            raise ValueError(f"the step grid counts {grid.n} training samples but {len(shard)} shard entries were given")
        g = grid
        return cls(shard, g.seed, g.steps_per_epoch, g.total_steps, g.batch_size, g.micro, g.accum, g.world, g.rank,
                   workers, buffer)

    def __getattr__(self, name: str) -> Any:
        """The grid's fields (n, seed, micro, total_steps, ...) read as the schedule's own, as BatchSchedule's."""
        if name in StepGrid.__dataclass_fields__:
            return getattr(self.grid, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def ks(self) -> range:
        """This process's micro-batch numbers within a step, in the order it trains on them (the grid's)."""
        return self.grid.ks()

    def shard_order(self, epoch: int) -> np.ndarray:
        """The shards in the order the epoch's stream lays them out."""
        g = torch.Generator().manual_seed(mix_seed(self.grid.seed, epoch, 0x5AAD))
        return self._used[torch.randperm(len(self._used), generator=g).numpy()]

    def _stretch(self, epoch: int, g: int) -> tuple[int, int]:
        """[begin, end) of reader g's stretch of the epoch's stream: readers in order, each as long as the
        micro-batches it reads this epoch x micro."""
        m = self.grid.steps_per_epoch * self.grid.accum  # micro-batches a process reads an epoch
        lo, p = epoch * m, self.workers
        per_process = m * self.grid.micro
        before = sum(_count(lo, lo + m, w, p) for w in range(g % p)) * self.grid.micro
        begin = (g // p) * per_process + before
        return begin, begin + _count(lo, lo + m, g % p, p) * self.grid.micro

    def reader_rows(self, epoch: int, g: int, order: np.ndarray | None = None) -> np.ndarray:
        """The rows reader g reads in `epoch`, in reading order (its stretch through its shuffle buffer)."""
        order = self.shard_order(epoch) if order is None else order
        a, b = self._stretch(epoch, g)
        ends = np.cumsum(self._len[order])
        begins = ends - self._len[order]
        parts = []
        for j in range(int(np.searchsorted(ends, a, side="right")), int(np.searchsorted(begins, b, side="left"))):
            base = self._start[order[j]]
            parts.append(self._rows[base + max(a, begins[j]) - begins[j] : base + min(b, ends[j]) - begins[j]])
        rows = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        return buffer_shuffle(rows, self.buffer, mix_seed(self.grid.seed, epoch, g, 0xB0FF))

    def _place(self, step: int, k: int) -> tuple[int, int]:
        """(reader, index of the micro-batch among that reader's this epoch) of micro-batch k at `step`."""
        q = step * self.grid.accum + k // self.grid.world
        lo = (step // self.grid.steps_per_epoch) * self.grid.steps_per_epoch * self.grid.accum
        w = q % self.workers
        return (k % self.grid.world) * self.workers + w, _count(lo, q, w, self.workers)

    def at(self, step: int, k: int, rows: dict[int, np.ndarray] | None = None) -> MicroBatch:
        """Micro-batch k of `step` (`rows`: reader -> reader_rows of this epoch, when already computed)."""
        epoch = step // self.grid.steps_per_epoch
        g, c = self._place(step, k)
        mine = rows[g] if rows is not None else self.reader_rows(epoch, g)
        return MicroBatch(step, k, epoch, torch.from_numpy(mine[c * self.grid.micro : (c + 1) * self.grid.micro].copy()))

    def iterate(self, start_step: int) -> Iterator[MicroBatch]:
        """This process's micro-batches from ``start_step`` to the end, in training order; an epoch's rows
        are laid out once, and the steps before ``start_step`` are never read."""
        rows, rows_epoch = None, -1
        for step in range(start_step, self.grid.total_steps):
            epoch = step // self.grid.steps_per_epoch
            if epoch != rows_epoch:
                order = self.shard_order(epoch)
                mine = range(self.grid.rank * self.workers, (self.grid.rank + 1) * self.workers)
                rows, rows_epoch = {g: self.reader_rows(epoch, g, order) for g in mine}, epoch
            for k in self.ks():
                yield self.at(step, k, rows)

    def describe(self) -> str:
        """The run's log line: the order, the remainder, what exactness holds."""
        left = self.grid.n - self.grid.steps_per_epoch * self.grid.batch_size
        return (f"data order: shard by shard (data.shard_order=shards): {len(self._used)} shards shuffled by (seed, "
                f"epoch), read in stretches by {self.grid.world} process(es) x {self.workers} reader(s) through "
                f"{self.buffer}-sample shuffle buffers; {left} of {self.grid.n} samples an epoch left out (n mod batch). "
                f"Resume is exact with the same processes and data.workers; unlike data.shard_order=global, "
                f"2 processes do not equal 1 with 2 accumulation steps")


def schedule_for(order: str, source: Source, grid: StepGrid, workers: int,
                 buffer: int = DEFAULT_BUFFER) -> BatchSchedule | ShardSchedule:
    """The schedule ``data.shard_order`` asks for on ``grid``: ``global`` one permutation of all samples an epoch
    (vitlab.data.sampler), ``shards`` the shard-sequential one above, ``auto`` shards for tar shards (a
    ShardSource, or a subset of one) and global for everything else."""
    if order not in ORDERS:
        raise ValueError(f"data.shard_order={order!r}: choose one of {', '.join(ORDERS)}")
    shard = getattr(source, "shard", None)
    if order == "shards" and shard is None:
        raise ValueError(f"data.shard_order=shards needs tar shards as data.dataset, not {type(source).__name__}; "
                         "use data.shard_order=auto or global")
    if order == "global" or shard is None:
        return BatchSchedule(**vars(grid))
    return ShardSchedule.on(grid, shard, workers, buffer)


def training_schedule(order: str, source: Source, seed: int, steps_per_epoch: int, total_steps: int,
                      batch_size: int, micro: int, accum: int, world: int, rank: int, workers: int,
                      buffer: int = DEFAULT_BUFFER) -> BatchSchedule | ShardSchedule:
    """``schedule_for`` with the grid's fields spelled out (``n`` is ``len(source)``)."""
    grid = StepGrid(len(source), seed, steps_per_epoch, total_steps, batch_size, micro, accum, world, rank)
    return schedule_for(order, source, grid, workers, buffer)
