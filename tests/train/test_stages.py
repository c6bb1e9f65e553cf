"""Progressive resizing in one run (schedule.stages): low-resolution steps, pos-embed resampling at the
switch, a restarted lr cycle, and exact resume from checkpoints taken before, at and after the switch."""
import pytest
import torch
from safetensors.torch import load_file

from vitlab.evaluate.metrics import evaluate_checkpoint
from vitlab.train import load_checkpoint, load_config, train
from vitlab.train.checkpoint import step_checkpoints
from vitlab.train.config import ScheduleSection
from vitlab.train.optim import cycle_lr
from vitlab.train.runlog import read_metrics

# digits 8x8, patch 2: 2 epochs at 4x4 (2x2 grid), then 1 epoch at the model's 8x8 with a new lr cycle
STAGES = ["schedule.epochs=3", "train.ckpt_every_steps=3", "train.keep_last=50", "train.ema_decay=0.9",
          "optim.lr=2e-3", "schedule.warmup_steps=2",
          "schedule.stages=[{epoch: 0, img_size: 4}, {epoch: 2, lr: 1e-3, warmup_epochs: 0.25}]"]


def test_cycle_lr_restarts_at_stage_boundaries():
    cfg = ScheduleSection(decay="linear")
    cycles = [(0, 1.0, 2), (10, 0.5, 0)]
    assert [cycle_lr(s, cycles, 20, cfg) for s in (0, 1)] == [0.5, 1.0]  # warmup
    assert cycle_lr(9, cycles, 20, cfg) == pytest.approx(1.0 * (1 - 7 / 8))  # first cycle ends at step 10
    assert cycle_lr(10, cycles, 20, cfg) == 0.5  # the new cycle starts at its peak (no warmup)
    assert cycle_lr(15, cycles, 20, cfg) == pytest.approx(0.25)


def test_stages_bad_values_name_the_stage():
    with pytest.raises(ValueError, match=r"stages\[1\].epoch"):
        load_config(None, ["schedule.stages=[{epoch: 2}, {epoch: 1}]"])
    with pytest.raises(ValueError, match=r"unknown field\(s\) size"):
        load_config(None, ["schedule.stages=[{epoch: 0, size: 16}]"])


def test_progressive_resizing_trains_low_res_then_the_model_size(tmp_path, tiny_random):
    args = tiny_random + STAGES
    ref = train(load_config(None, args), tmp_path / "ref", progress=False)  # 3 epochs x 8 steps
    assert ref.step == 24
    recs = [r for r in read_metrics(tmp_path / "ref") if "train_loss" in r]
    assert [r["img_size"] for r in recs] == [4] * 16 + [8] * 8
    lrs = [r["lr"] for r in recs]
    assert lrs[1] == pytest.approx(2e-3) and lrs[15] < 2e-4  # the first cycle decays to ~0 at the switch
    assert lrs[16] == pytest.approx(0.5e-3) and lrs[17] == pytest.approx(1e-3)  # warmup over 2 steps

    ckpts = {int(p.stem.split("_")[1]): p for p in step_checkpoints(tmp_path / "ref")}
    assert load_checkpoint(ckpts[15])["model"]["pos_embed"].shape[1] == 1 + 2 * 2
    assert load_checkpoint(ckpts[18])["model"]["pos_embed"].shape[1] == 1 + 4 * 4
    final = load_file(str(tmp_path / "ref" / "model" / "model.safetensors"))
    assert final["pos_embed"].shape[1] == 1 + 4 * 4  # saved at the model's own size

    for step in (9, 16, 18):  # before the switch, at it (saved at 4x4), after it
        run = tmp_path / f"from{step}"
        train(load_config(None, args), run, resume=ckpts[step], progress=False)
        got = load_file(str(run / "model" / "model.safetensors"))
        for k in final:
            torch.testing.assert_close(got[k], final[k], rtol=1e-5, atol=1e-6, msg=f"resumed at {step}: {k}")


def test_training_only_at_low_resolution_ends_at_the_model_size(tmp_path, tiny):
    res = train(load_config(None, tiny + ["schedule.epochs=1", "schedule.stages=[{epoch: 0, img_size: 4}]"]),
                tmp_path / "r", progress=False)
    at_model_size = evaluate_checkpoint(str(tmp_path / "r" / "model"), "digits", "test", device="cpu")
    assert res.final["n"] == at_model_size["n"] and res.final["top1"] == pytest.approx(at_model_size["top1"])
    assert load_file(str(tmp_path / "r" / "model" / "model.safetensors"))["pos_embed"].shape[1] == 1 + 4 * 4


def test_a_stage_size_the_patch_does_not_divide_fails_before_training(tmp_path, tiny):
    stages = "schedule.stages=[{epoch: 0, img_size: 4}, {epoch: 0.5, img_size: 5}]"
    with pytest.raises(ValueError, match=r"stages\[1\].img_size=5: .*not divisible by the patch size 2"):
        train(load_config(None, tiny + ["schedule.epochs=1", stages]), tmp_path / "r", progress=False)
    assert not (tmp_path / "r" / "checkpoints").exists()
