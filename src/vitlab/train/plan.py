"""A run's step arithmetic, fixed before the first step: batch split, epochs in steps, stages, lr cycles.

Everything here is a pure function of the recipe, the training-set size and the number of processes,
so a resumed run (or one on another number of processes with the same global batch) plans the same.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..data.sampler import StepGrid
from .config import Config, ScheduleSection
from .optim import cycle_lr

Size = tuple[int, int]


@dataclass(frozen=True)
class Plan:
    grid: StepGrid  # the step arithmetic the data order shares (vitlab.data.sampler)
    sizes: tuple[tuple[int, Size], ...]  # (start step, training image size), from step 0 on
    cycles: tuple[tuple[int, float, int], ...]  # lr cycles: (start step, peak lr, warmup steps)
    schedule: ScheduleSection

    @property
    def steps_per_epoch(self) -> int:
        return self.grid.steps_per_epoch

    @property
    def total_steps(self) -> int:
        return self.grid.total_steps

    @property
    def micro(self) -> int:
        """Images per micro-batch: batch_size = accum_steps x processes x micro."""
        return self.grid.micro

    def size_at(self, step: int) -> Size:
        return [size for start, size in self.sizes if start <= step][-1]

    def lr_at(self, step: int) -> float:
        return cycle_lr(step, list(self.cycles), self.total_steps, self.schedule)

    def epoch(self, step: int) -> float:
        return step / self.steps_per_epoch


def make_plan(cfg: Config, n_train: int, world: int, img_size: Size, check_size: Callable[[Size], object],
              rank: int = 0) -> Plan:
    """The plan for ``n_train`` images on ``world`` processes (this one ``rank``) and a model of ``img_size``;
    ``check_size`` raises ValueError for a size the model cannot take, so a bad stage fails now, not mid-run."""
    data, s = cfg.data, cfg.schedule
    parts = data.accum_steps * world
    if data.batch_size % parts:
        raise ValueError(f"data.batch_size={data.batch_size} is not divisible by data.accum_steps x processes = {parts}")
    steps_per_epoch = n_train // data.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"data.batch_size={data.batch_size} is larger than the training set ({n_train} images)")
    warmup = s.warmup_steps if s.warmup_steps is not None else round(s.warmup_epochs * steps_per_epoch)
    sizes = [(0, img_size)]
    cycles = {0: (0, cfg.optim.lr, warmup)}
    for i, stage in enumerate(s.stages or ()):
        start = round(stage.epoch * steps_per_epoch)
        size = (stage.img_size,) * 2 if stage.img_size else img_size
        try:
            check_size(size)
        except ValueError as e:
            raise ValueError(f"schedule.stages[{i}].img_size={size[0]}: {e}") from None
        sizes.append((start, size))
        if stage.lr is not None:
            cycles[start] = (start, stage.lr, round(stage.warmup_epochs * steps_per_epoch))
    grid = StepGrid(n_train, cfg.train.seed, steps_per_epoch, s.steps or s.epochs * steps_per_epoch, data.batch_size,
                    data.batch_size // parts, data.accum_steps, world, rank)
    return Plan(grid, tuple(sizes), tuple(sorted(cycles.values())), s)
