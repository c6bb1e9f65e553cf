"""Every optimizer step draws new crops and flips: a sample's augmentation is seeded by the step as well as by
its place in the micro-batch, on both paths (in memory: the batched transform, seeded by (seed, step, k);
streamed: each sample's crop in the workers, seeded by (seed, step, k, j)). On a folder whose images are all
the same picture, the model's inputs at the same place of two steps differ only through those draws."""
import shutil

import pytest
import torch
from PIL import Image

from vitlab.train import load_config, loop, train

ARGS = ["data.batch_size=8", "data.normalize=minus1_1", "data.crop_scale=[0.3,1.0]", "data.workers=0",
        "model.name=vit_mnist", "model.img_size=16", "model.patch_size=4", "model.embed_dim=16", "model.depth=1",
        "model.num_heads=2", "model.mlp_dim=32", "train.threads=1", "schedule.epochs=1", "schedule.warmup_steps=0"]


@pytest.fixture
def same_picture(tmp_path, photo):
    """2 classes x 10 copies of one 40x48 picture: 16 training images (4 held out), 2 steps of 8."""
    first = tmp_path / "one.png"
    Image.fromarray(photo(40, 48, 5)).save(first)
    for c in range(2):
        (tmp_path / "same" / f"class{c}").mkdir(parents=True)
        for i in range(10):
            shutil.copy(first, tmp_path / "same" / f"class{c}" / f"{i:02d}.png")
    return tmp_path / "same"


@pytest.mark.parametrize("in_memory", ["true", "false"])
def test_each_step_draws_new_crops_and_flips(tmp_path, same_picture, monkeypatch, in_memory):
    inputs: list[torch.Tensor] = []
    stepping = []
    real_model, real_step = loop.build_run_model, loop.train_step

    def recording(*a, **k):  # the model's inputs within optimizer steps, one micro-batch a step
        model = real_model(*a, **k)
        model.register_forward_pre_hook(lambda m, args: inputs.append(args[0].detach().clone()) if stepping else None)
        return model

    def step(*a, **k):
        stepping.append(True)
        try:
            return real_step(*a, **k)
        finally:
            stepping.clear()

    monkeypatch.setattr(loop, "build_run_model", recording)
    monkeypatch.setattr(loop, "train_step", step)
    cfg = load_config(None, ARGS + [f"data.dataset={same_picture}", f"data.in_memory={in_memory}"])
    assert train(cfg, tmp_path / "run", progress=False).step == 2
    assert len(inputs) == 2 and inputs[0].shape == (8, 3, 16, 16)
    for j in range(8):  # the same picture at the same place of steps 0 and 1: other crops and flips
        assert not torch.equal(inputs[0][j], inputs[1][j]), f"sample {j} augmented alike in both steps"
