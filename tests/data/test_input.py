"""The input pipeline object between data/ and train/ (vitlab.data.input): what it decides once and hands out."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vitlab.data import load_arrays
from vitlab.data.input import Augmentation, InputPipeline, Layout
from vitlab.data.pipeline import InMemoryBatches, StreamingBatches
from vitlab.data.recipe import DataSection
from vitlab.data.sampler import BatchSchedule, StepGrid, stream_seed
from vitlab.data.shard_order import ShardSchedule, schedule_for
from vitlab.data.splits import RunData
from vitlab.models import ViTConfig


def _arrays(n: int = 40, size: int = 8) -> RunData:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, size, size), generator=g, dtype=torch.uint8).numpy()
    y = np.arange(n) % 4
    full = load_arrays(x, y, ["a", "b", "c", "d"])
    train, test = full.subset(torch.arange(0, 32)), full.subset(torch.arange(32, n))
    return RunData(train, test, False, ["test set: the source's own test split (8 images)"])


def _model_cfg(size: int = 8) -> ViTConfig:
    return ViTConfig(img_size=size, patch_size=4, in_chans=1, embed_dim=16, depth=1, num_heads=2, mlp_dim=32,
                     num_classes=4, mean=(0.5,), std=(0.5,))


def _pipeline(data: RunData, world: int = 1, rank: int = 0, **recipe) -> InputPipeline:
    r = DataSection(batch_size=8, eval_batch_size=3, **recipe)
    grid = StepGrid(len(data.train), 5, len(data.train) // 8, 6, 8, 8 // world, 1, world, rank)
    return InputPipeline(r, data, grid, Layout(world, rank, 0, torch.device("cpu")), _model_cfg())


def test_in_memory_input_gathers_batches_and_crops_in_the_batched_half():
    inputs = _pipeline(_arrays())
    assert inputs.classes == ["a", "b", "c", "d"]
    assert inputs.augmentation.per_sample is None and inputs.augmentation.batched.crop
    batches = inputs.train_batches(0)
    assert isinstance(batches, InMemoryBatches)
    images, labels = batches.get(3, 0)
    rows = BatchSchedule(32, 5, 4, 6, 8, 8, 1, 1, 0).at(3, 0).rows
    assert torch.equal(images, inputs.data.train.images[rows]) and torch.equal(labels, inputs.data.train.labels[rows])
    assert inputs.seed_of(3, 0) == stream_seed(5, 3, 0)


def test_eval_batches_give_each_process_every_world_th_image_once():
    data = _arrays()
    seen = []
    for rank in range(3):
        inputs = InputPipeline(DataSection(batch_size=8, eval_batch_size=3), data,
                               StepGrid(32, 0, 4, 4, 8, 8, 1, 1, 0), Layout(3, rank, 0, torch.device("cpu")),
                               _model_cfg())
        ys = torch.cat([y for _, y in inputs.eval_batches("test", _model_cfg())])
        seen.append(ys)
        assert torch.equal(ys, data.test.labels[rank::3])
    assert sum(len(s) for s in seen) == len(data.test)


def test_eval_split_is_dev_when_the_run_holds_one_out():
    data = _arrays().narrowed(None, 0.25, seed=0)
    inputs = _pipeline(data)
    ds, name = inputs.split("eval")
    assert name == "dev" and ds is data.dev and len(ds) == 8
    assert inputs.split("test")[1] == "test"
    assert "24 train / 8 dev" in inputs.summary()


def test_streamed_input_crops_per_sample_and_resumes_at_a_step(tmp_path):
    from PIL import Image

    from vitlab.data import open_dataset

    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(12):
            Image.fromarray(np.full((10 + i, 9, 3), 20 * i, np.uint8)).save(tmp_path / c / f"{i}.png")
    src = open_dataset(str(tmp_path), in_memory=False)
    data = RunData(src, src, False)
    r = DataSection(batch_size=8, crop_scale=(0.5, 1.0))
    grid = StepGrid(len(src), 1, 3, 6, 8, 8, 1, 1, 0)
    inputs = InputPipeline(r, data, grid, Layout(1, 0, 0, torch.device("cpu")), _model_cfg())
    aug = inputs.augmentation
    assert aug.per_sample is not None and aug.per_sample.size == (8, 8) and aug.per_sample.scale == (0.5, 1.0)
    assert not aug.batched.crop  # the workers cropped and flipped already
    assert "read from disk in this process" in inputs.summary()
    full, late = inputs.train_batches(0), inputs.train_batches(4)
    assert isinstance(full, StreamingBatches)
    assert len(late.loader.sampler) == 2  # steps 4 and 5 only: the steps before start_step are never read
    want = {s: full.get(s, 0) for s in range(6)}  # same code, same process: equal by construction (uint8 pixels)
    for s in range(4, 6):
        x, y = late.get(s, 0)
        assert torch.equal(x, want[s][0]) and torch.equal(y, want[s][1])


def test_augmentation_is_built_from_the_recipe_at_the_model_size():
    r = DataSection(crop_scale=(0.3, 0.9), flip=False, translate=2, random_erasing=0.25, randaugment=(2, 9))
    aug = Augmentation.from_recipe(r, _model_cfg(16), streamed=True)
    b = aug.batched
    assert b.img_size == (16, 16) and b.translate == 2 and b.random_erasing == 0.25 and b.randaugment == (2, 9)
    assert aug.per_sample.flip is False and aug.per_sample.ratio == r.crop_ratio


def test_both_schedules_share_the_grid_and_refuse_a_mismatched_one():
    shard = np.repeat(np.arange(4), 10)
    grid = StepGrid(40, 3, 4, 8, 8, 4, 1, 2, 1)
    on = ShardSchedule.on(grid, shard, workers=2, buffer=5)
    spelled = ShardSchedule(shard, 3, 4, 8, 8, 4, 1, 2, 1, 2, 5)
    assert on.grid == grid and on.micro == 4 and on.total_steps == 8 and list(on.ks()) == list(grid.ks()) == [1]
    assert [mb.rows.tolist() for mb in on.iterate(0)] == [mb.rows.tolist() for mb in spelled.iterate(0)]
    assert isinstance(schedule_for("global", None, grid, 2), BatchSchedule)
    with pytest.raises(ValueError, match="counts 39 training samples but 40 shard entries"):
        ShardSchedule.on(StepGrid(39, 3, 4, 8, 8, 4, 1, 2, 1), shard, workers=2)
