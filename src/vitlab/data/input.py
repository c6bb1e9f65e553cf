"""A run's input pipeline: the one object the trainer reads its images through.

Built once before step 0 from the data recipe (``data:``), the run's splits (opened and split by
vitlab.data.splits), the frozen step grid (vitlab.data.sampler.StepGrid) and the process layout, it owns
what a run decides about its input:

- the schedule: which rows micro-batch k of step s holds (the global order, or shard by shard for tar
  shards: vitlab.data.shard_order), fixed by the grid so that resume needs no sampler state;
- the augmentation, built once at the model's own size, in its two halves: the per-sample half (Inception
  crop, flip, resize) that DataLoader workers run on images read from disk, and the batched half (shift,
  RandAugment, erasing, normalisation; crop and flip too for in-memory images) run on the micro-batch;
- evaluation: each process's share of the dev or test split, preprocessed as the model's metadata says;
- the lines the run prints about its data.

    inputs = InputPipeline(cfg.data, splits, plan.grid, Layout.of(...), model.cfg)
    batches = inputs.train_batches(start_step)      # .get(step, k) -> uint8 images, labels
    gen.manual_seed(inputs.seed_of(step, k))
    x = inputs.augmentation.batched(images, gen)    # model input
    for x, y in inputs.eval_batches("test", model.cfg): ...
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Literal

import torch
from torch import Tensor

from .pipeline import Batches, CropSpec, InMemoryBatches, StreamingBatches, default_workers, eval_batches
from .recipe import DataSection
from .sampler import StepGrid, stream_seed
from .shard_order import ShardSchedule, schedule_for
from .splits import RunData
from .transforms import EvalTransform, TrainTransform

Split = Literal["eval", "test"]  # eval: the per-epoch evaluation's split (dev, or test without one)


@dataclass(frozen=True)
class Layout:
    """Where the run's processes are: ``world`` of them, this one ``rank``, each with ``workers`` DataLoader
    worker processes decoding images read from disk, computing on ``device``."""

    world: int = 1
    rank: int = 0
    workers: int = 0
    device: torch.device = torch.device("cpu")

    @classmethod
    def of(cls, world: int, rank: int, local_world: int, device: torch.device, workers: int | None) -> Layout:
        """``workers``: data.workers; None shares this machine's cores among its ``local_world`` processes."""
        return cls(world, rank, workers if workers is not None else default_workers(local_world), device)


@dataclass(frozen=True)
class Augmentation:
    """Training augmentation from the data recipe at the model's size, in its two halves: ``per_sample`` (crop,
    flip, resize in the workers; None for images in memory) and ``batched`` (the rest, on the micro-batch;
    crop and flip too when there is no per-sample half)."""

    per_sample: CropSpec | None
    batched: TrainTransform

    @classmethod
    def from_recipe(cls, recipe: DataSection, model_cfg: Any, streamed: bool) -> Augmentation:
        """``model_cfg``: the model's config (img_size, mean, std, in_chans); ``streamed``: images read from disk."""
        d, mc = recipe, model_cfg
        batched = TrainTransform(mc.img_size, scale=d.crop_scale, ratio=d.crop_ratio, flip=d.flip, mean=mc.mean,
                                 std=mc.std, randaugment=d.randaugment, random_erasing=d.random_erasing,
                                 in_chans=mc.in_chans, translate=d.translate, crop=not streamed)
        per_sample = CropSpec(batched.img_size, d.crop_scale, d.crop_ratio, d.flip) if streamed else None
        return cls(per_sample, batched)


class InputPipeline:
    """The run's input (see the module docstring): ``train_batches(start_step)``, ``eval_batches(split)``,
    ``classes``, ``describe()``."""

    def __init__(self, recipe: DataSection, data: RunData, grid: StepGrid, layout: Layout, model_cfg: Any) -> None:
        self.recipe, self.data, self.grid, self.layout = recipe, data, grid, layout
        self.streamed = not data.train.in_memory
        self.augmentation = Augmentation.from_recipe(recipe, model_cfg, self.streamed)
        self.schedule = schedule_for(recipe.shard_order, data.train, grid, layout.workers, recipe.shuffle_buffer)

    @property
    def classes(self) -> list[str]:
        return self.data.classes

    def seed_of(self, step: int, k: int) -> int:
        """The seed of everything random in micro-batch k of ``step`` (its batched augmentation, mixup, masks,
        dropout): a pure function of (seed, step, k), so a resumed run or another process count draws the same."""
        return stream_seed(self.grid.seed, step, k)

    def train_batches(self, start_step: int) -> Batches:
        """The training micro-batches from ``start_step`` on (a resumed run reads no skipped sample): gathered on
        the device when the images are in memory, else read, cropped and resized by the workers."""
        train, layout = self.data.train, self.layout
        if not self.streamed:
            return InMemoryBatches(train, self.schedule, layout.device)  # type: ignore[arg-type]
        return StreamingBatches(train, self.schedule, start_step, self.augmentation.per_sample, self.grid.seed,
                                self.recipe.on_error, layout.workers, layout.device)

    def split(self, split: Split) -> tuple[Any, str]:
        """(images, name) of ``split``: "eval" is the dev split (or test without one), "test" the test split."""
        d = self.data
        return (d.eval_set, d.eval_name) if split == "eval" else (d.test, d.test_name)

    def eval_batches(self, split: Split, model_cfg: Any) -> Iterator[tuple[Tensor, Tensor]]:
        """This process's share of ``split`` (every world-th image, from its rank on) as model inputs on the
        device, preprocessed as ``model_cfg`` (the model at its current size) defines, as predict does."""
        ds, _ = self.split(split)
        layout = self.layout
        rows = torch.arange(layout.rank, len(ds), layout.world)
        return eval_batches(ds, EvalTransform.for_model(model_cfg), self.recipe.eval_batch_size, rows,
                            layout.workers, device=layout.device)

    def describe(self) -> list[str]:
        """The lines a run prints about its data before training: where each split came from, how the images
        are read, what was fitted to them, and the data order when it is not the global one."""
        order = [self.schedule.describe()] if isinstance(self.schedule, ShardSchedule) else []
        return [*self.data.notes, *order]

    def summary(self) -> str:
        """The data part of the run's first line: the data set, its split sizes and how it is read."""
        d, w = self.data, self.layout.workers
        how = "in memory" if not self.streamed else f"read from disk by {w} worker process(es)" if w else \
            "read from disk in this process (data.workers=0)"
        return (f"{self.recipe.dataset} ({len(d.train)} train / {len(d.eval_set)} "
                f"{d.test_name if d.eval_name == 'test' else d.eval_name}; {how})")
