"""Training on a folder read from disk by DataLoader workers keeps what the in-memory path keeps: a run killed
mid-epoch and resumed ends bit-identical to an uninterrupted one, 2 processes equal 1 process with 2
accumulation steps, unreadable files are replaced and listed, and the paper's recipe runs on a folder."""
import json

import pytest
import torch
from safetensors.torch import load_file

from vitlab.train import load_config, train
from vitlab.train.runlog import read_metrics

# A tiny ViT on 16x16 crops of a 3-class folder of 20-40 px JPEGs, read lazily by 2 worker processes.
STREAM = ["data.in_memory=false", "data.workers=2", "data.batch_size=12", "data.normalize=minus1_1",
          "data.eval_batch_size=64", "model.name=vit_mnist", "model.img_size=16", "model.patch_size=4",
          "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.mlp_dim=64", "train.threads=1",
          "train.log_every_steps=1", "data.crop_scale=[0.3,1.0]", "data.mixup_alpha=0.2", "model.drop_path_rate=0.1",
          "model.drop_rate=0.1", "data.label_smoothing=0.1", "data.randaugment=[2,5]", "data.random_erasing=0.25"]


def _weights(run):
    return load_file(str(run / "model" / "model.safetensors"))


@pytest.fixture
def folder(tmp_path, make_folder):
    return make_folder(tmp_path / "photos", per_class=20)


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path, folder, spawn, sigkill_at):
    args = STREAM + [f"data.dataset={folder}", "schedule.epochs=4", "schedule.warmup_steps=2",
                     "train.ckpt_every_steps=3", "train.ema_decay=0.9"]
    ref = train(load_config(None, args), tmp_path / "ref", progress=False)
    assert ref.step == 16  # 48 training images (12 held out) / 12 = 4 steps an epoch
    killed = spawn("vitlab", "train", "--out", str(tmp_path / "kill"), "--no-progress", *args)
    ckpt = tmp_path / "kill" / "checkpoints" / "step_00000006.pt"  # mid-epoch 1
    sigkill_at(killed, ckpt)
    assert not (tmp_path / "kill" / "final.json").exists()
    out = train(load_config(None, args), tmp_path / "kill", progress=False)
    assert out.step == 16
    a, b = _weights(tmp_path / "kill"), _weights(tmp_path / "ref")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ"
    fa, fb = (json.loads((tmp_path / r / "final.json").read_text()) for r in ("kill", "ref"))
    assert fa["top1"] == fb["top1"] and fa["loss"] == fb["loss"]


def test_two_processes_equal_one_with_accumulation_on_a_streamed_folder(tmp_path, folder, spawn):
    args = STREAM + [f"data.dataset={folder}", "schedule.epochs=2", "schedule.warmup_steps=2"]
    p = spawn("torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "vitlab", "train",
              "--out", str(tmp_path / "ddp"), "--no-progress", *args)
    train(load_config(None, args + ["data.accum_steps=2"]), tmp_path / "one", progress=False)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert "2 process(es) x 1 accumulation x 6" in out and "read from disk by 2 worker" in out
    a, b = _weights(tmp_path / "ddp"), _weights(tmp_path / "one")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    ma, mb = read_metrics(tmp_path / "ddp"), read_metrics(tmp_path / "one")
    steps = [[r["step"] for r in m if "train_loss" in r] for m in (ma, mb)]
    assert steps[0] == steps[1] == list(range(1, 9))
    la, lb = ([r["train_loss"] for r in m if "train_loss" in r] for m in (ma, mb))
    assert la == pytest.approx(lb, rel=1e-5)


def test_unreadable_files_are_replaced_and_listed(tmp_path, folder, capsys):
    args = STREAM + [f"data.dataset={folder}", "schedule.epochs=2", "data.workers=0"]
    from vitlab.data import open_dataset

    names = [open_dataset(str(folder), in_memory=False).paths[i] for i in (0, 25)]
    cfg = load_config(None, args)
    from vitlab.train import loop

    real = loop.load_data

    def spoil_after_scan(*a, **k):  # the files break after the folder was indexed, while training reads it
        data = real(*a, **k)
        for n in names:
            (folder / n).write_bytes(b"\xff\xd8 truncated")
        return data

    loop.load_data = spoil_after_scan
    try:
        train(cfg, tmp_path / "run", progress=False)
    finally:
        loop.load_data = real
    listed = (tmp_path / "run" / "skipped.txt").read_text()
    assert [n for n in names if n in listed] and "cannot read image" in listed  # met in the training split
    assert "unreadable training file(s) replaced by other images" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"cannot read image .*class\d/0\d\d\.jpg.*data.on_error=raise"):
        train(load_config(None, args + ["data.on_error=raise"]), tmp_path / "strict", progress=False)


def test_the_pretraining_recipe_runs_on_a_folder(tmp_path, folder):
    args = [f"data.dataset={folder}", "data.batch_size=8", "data.accum_steps=2", "data.eval_batch_size=16",
            "data.in_memory=false", "data.workers=1", "data.dev_fraction=0.1", "model.name=vit_ti16",
            "model.img_size=32", "model.patch_size=16", "model.depth=1", "schedule.steps=3",
            "schedule.warmup_steps=1", "train.threads=1", "train.log_every_steps=1"]
    res = train(load_config("configs/pretrain.yaml", args), tmp_path / "pre", progress=False)
    assert res.step == 3 and (tmp_path / "pre" / "model" / "config.json").is_file()
    final = json.loads((tmp_path / "pre" / "final.json").read_text())
    assert final["split"] == "held-out test" and final["n"] == 12
