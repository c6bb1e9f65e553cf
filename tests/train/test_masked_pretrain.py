"""train.objective=masked_patch: the pretext loss falls, resume is exact, and fine-tuning starts from RUN/model."""
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vitlab.evaluate.metrics import evaluate_checkpoint
from vitlab.train import build_model, load_checkpoint, load_config, train
from vitlab.train.checkpoint import step_checkpoints
from vitlab.train.runlog import read_metrics

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MASKED = ["train.objective=masked_patch", "optim.name=adam", "optim.lr=3e-3", "optim.weight_decay=0.0",
          "schedule.steps=12", "schedule.warmup_steps=2", "train.ckpt_every_steps=4", "train.keep_last=10",
          "data.crop_scale=[0.5,1.0]", "model.drop_path_rate=0.1", "data.normalize=mnist"]


def test_masked_pretraining_resumes_exactly_and_fine_tunes(tmp_path, tiny):
    cfg = load_config(None, tiny + MASKED)
    train(cfg, tmp_path / "ref", progress=False)
    losses = [r["train_loss"] for r in read_metrics(tmp_path / "ref") if "train_loss" in r]
    assert len(losses) == 12 and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) < sum(losses[:3])  # 8 grey levels: starts near ln 8, learns the colour statistics
    final = json.loads((tmp_path / "ref" / "final.json").read_text())
    assert final["objective"] == "masked_patch" and 0 <= final["masked_acc"] <= 100
    assert any("test_masked_acc" in r for r in read_metrics(tmp_path / "ref"))
    assert (tmp_path / "ref" / "curves.png").is_file() and "masked-patch accuracy" in (tmp_path / "ref" / "report.md").read_text()

    # RUN/model is the encoder alone; the pretext [mask] embedding and head live in the checkpoints.
    model_cfg = json.loads((tmp_path / "ref" / "model" / "config.json").read_text())
    encoder = load_file(str(tmp_path / "ref" / "model" / "model.safetensors"))
    assert model_cfg["num_classes"] == 0 and not any(k.startswith(("head.", "mask_token")) for k in encoder)
    last = load_checkpoint(step_checkpoints(tmp_path / "ref")[-1])
    assert set(last["pretext"]) == {"mask_token", "head.weight", "head.bias"}
    assert last["pretext"]["head.weight"].shape[0] == 8  # 3 bits x 1 channel

    # Resume from step 4 (mid-epoch: 8 steps per epoch) ends exactly where the uninterrupted run did.
    ckpt_dir = tmp_path / "resumed" / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    shutil.copy(tmp_path / "ref" / "checkpoints" / "step_00000004.pt", ckpt_dir)
    train(cfg, tmp_path / "resumed", progress=False)
    again = load_checkpoint(step_checkpoints(tmp_path / "resumed")[-1])
    for part in ("model", "pretext"):
        for k, v in last[part].items():
            torch.testing.assert_close(again[part][k], v, rtol=1e-5, atol=1e-6, msg=f"{part}.{k}")
    with pytest.raises(ValueError, match="objective=masked_patch"):  # a classification run cannot continue it
        train(load_config(None, tiny + MASKED[2:]), tmp_path / "resumed", progress=False)

    # Fine-tuning starts from the pretrained encoder with a fresh zero-initialised head.
    ft_cfg = load_config(None, tiny + [f"model.weights={tmp_path / 'ref' / 'model'}", "schedule.steps=2",
                                       "data.normalize=mnist"])
    model = build_model(ft_cfg, [str(i) for i in range(10)])
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in encoder.items()) and torch.all(model.head.weight == 0)
    result = train(ft_cfg, tmp_path / "ft", progress=False)
    assert result.final["objective"] == "classify"
    saved = evaluate_checkpoint(str(tmp_path / "ft" / "model"), "digits", "test", device="cpu")
    assert result.final["n"] == saved["n"] and result.final["top1"] == pytest.approx(saved["top1"])


def test_masked_recipe_and_bad_combinations():
    cfg = load_config(CONFIGS / "masked_pretrain.yaml")
    assert (cfg.train.objective, cfg.optim.name, cfg.optim.lr, cfg.schedule.decay) == ("masked_patch", "adam", 2e-4, "cosine")
    assert cfg.schedule.warmup_steps > 0
    with pytest.raises(ValueError, match="mixup"):
        load_config(CONFIGS / "masked_pretrain.yaml", ["data.mixup_alpha=0.2"])
    with pytest.raises(ValueError, match="objective"):
        load_config(None, ["train.objective=mae"])
