"""Both recipes end to end on tiny data, the run directory's contents, and the non-finite-loss stop."""
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vitlab
from vitlab import cli
from vitlab.train import NonFiniteLossError, load_checkpoint, load_config, train
from vitlab.train.checkpoint import step_checkpoints
from vitlab.train.runlog import read_metrics

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_pretrain_recipe_writes_a_complete_run(tmp_path, tiny):
    cfg = load_config(CONFIGS / "pretrain.yaml", tiny + [
        "data.dev_fraction=0.1", "data.batch_size=64", "data.accum_steps=4", "data.eval_batch_size=128",
        "schedule.epochs=3", "schedule.warmup_steps=2", "optim.lr=3e-3", "train.ckpt_every_steps=2",
        "train.keep_last=2", "data.crop_scale=[0.5,1.0]"])
    res = train(cfg, tmp_path, progress=False)
    assert res.interrupted is None and res.step == res.total_steps == 9  # 230 train images // 64 x 3 epochs
    for name in ("config.yaml", "final.json", "report.md", "curves.png", "confusion.png", "metrics.jsonl"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert list((tmp_path / "tb").iterdir())
    final = json.loads((tmp_path / "final.json").read_text())
    assert final["n"] == 359 and 0 <= final["top1"] <= final["top5"] <= 100 and len(final["per_class"]) == 10
    # sigmoid cross-entropy with the -10 head bias starts at ~10 per image (one softplus(10) for the true class) and must come down
    losses = [r["train_loss"] for r in read_metrics(tmp_path) if "train_loss" in r]
    assert losses[0] == pytest.approx(10.0, abs=0.01) and losses[-1] < losses[0] - 0.3
    assert any("dev_top1" in r for r in read_metrics(tmp_path))
    # last-k plus best, complete state
    assert [p.name for p in step_checkpoints(tmp_path)] == ["step_00000008.pt", "step_00000009.pt"]
    assert (tmp_path / "checkpoints" / "best.pt").is_file()
    st = load_checkpoint(step_checkpoints(tmp_path)[-1])
    assert {"model", "optimizer", "ema", "rng", "step", "epoch", "step_in_epoch", "config"} <= set(st)
    # the saved model carries its preprocessing and class names, and reloads to the same outputs
    model = vitlab.from_pretrained(tmp_path / "model")
    assert model.cfg.class_names == tuple(str(i) for i in range(10)) and model.cfg.mean == (0.5, 0.5, 0.5)
    torch.testing.assert_close(model.state_dict()["head.weight"], st["model"]["head.weight"])


def test_finetune_from_checkpoint_at_higher_resolution(tmp_path, tiny):
    src = vitlab.create_model("vit_mnist", img_size=8, patch_size=2, in_chans=1, embed_dim=32, depth=2, num_heads=2,
                              mlp_dim=64, num_classes=10, mean=(0.5,), std=(0.5,))
    with torch.no_grad():
        src.head.weight.normal_()  # a trained-looking head that fine-tuning must replace
    src.save_pretrained(str(tmp_path / "pre"))
    cfg = load_config(CONFIGS / "finetune.yaml", tiny + [
        "model.name=null", f"model.weights={tmp_path / 'pre'}", "model.img_size=16", "data.normalize=null",
        "data.dev_fraction=0", "schedule.steps=3", "schedule.warmup_steps=1", "optim.lr=1e-3",
        "data.crop_scale=[0.5,1.0]"])
    train(cfg, tmp_path / "run", progress=False)
    first = read_metrics(tmp_path / "run")[0]
    assert first["train_loss"] == pytest.approx(math.log(10), abs=1e-5)  # zero-initialised new head
    out = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    assert out["pos_embed"].shape == (1, 1 + 8 * 8, 32)  # 4x4 grid resampled to 8x8
    cfg_out = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert cfg_out["img_size"] == [16, 16] and cfg_out["mean"] == [0.5]
    # fine-tuned from the checkpoint (small lr, 3 steps): the blocks stay close to the pretrained ones
    pre = src.state_dict()["blocks.0.attn.qkv.weight"]
    assert (out["blocks.0.attn.qkv.weight"] - pre).abs().max() < 0.01
    assert not torch.equal(out["blocks.0.attn.qkv.weight"], pre)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys, tiny):
    from vitlab.train import objectives

    calls = {"n": 0}
    real = objectives.soft_target_xent

    def exploding(logits, target, kind):
        calls["n"] += 1
        loss = real(logits, target, kind)
        return loss * float("nan") if calls["n"] > 5 else loss  # step 5 (0-based) goes bad

    monkeypatch.setattr(objectives, "soft_target_xent", exploding)
    argv = ["train", "--out", str(tmp_path), "--no-progress", *tiny, "schedule.epochs=2", "train.ckpt_every_steps=2"]
    assert cli.main(argv) == 3
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "at step 5" in err and "step_00000004.pt" in err
    ckpts = step_checkpoints(tmp_path)
    assert ckpts[-1].name == "step_00000004.pt"
    st = load_checkpoint(ckpts[-1])
    assert all(torch.isfinite(v).all() for v in st["model"].values())
    assert not (tmp_path / "final.json").exists()
    with pytest.raises(NonFiniteLossError):  # the same (deterministic) run resumes from step 4 and stops again
        train(load_config(None, tiny + ["schedule.epochs=2", "train.ckpt_every_steps=2"]), tmp_path, progress=False)
    assert step_checkpoints(tmp_path)[-1].name == "step_00000004.pt"


def test_fresh_start_refuses_to_overwrite_a_run(tmp_path, tiny):
    cfg = load_config(None, tiny + ["schedule.steps=1"])
    train(cfg, tmp_path, progress=False)
    with pytest.raises(ValueError, match="already has checkpoints"):
        train(cfg, tmp_path, resume=False, progress=False)
