"""Training today's backbones: layer decay counts registers, the pre-norm and LayerScale in their layers;
fine-tuning from a DINOv2-style timm file (registers, LayerScale) with a new head at another resolution;
fsdp on 2 processes computes what 1 process computes for a model with every new switch."""
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vitlab
from vitlab.train import load_config, train
from vitlab.train.optim import param_groups
from vitlab.train.runlog import read_metrics
from vitlab.weights import save_timm

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SWITCHES = ["model.reg_tokens=2", "model.init_values=0.1", "model.classifier=map", "model.no_embed_class=true",
            "model.qk_norm=true", "model.pre_norm=true"]


def test_layer_decay_places_registers_pre_norm_layerscale_and_map_head():
    depth, decay = 3, 0.5
    model = vitlab.create_model("vit_mnist", embed_dim=32, depth=depth, num_heads=2, mlp_dim=64, reg_tokens=2,
                                init_values=0.1, classifier="map", pre_norm=True)
    groups = param_groups(model, 0.1, layer_decay=decay)
    by_param = {id(p): g for g in groups for p in g["params"]}
    for name, p in model.named_parameters():
        g = by_param[id(p)]
        if name.startswith(("patch_embed.", "reg_token", "pos_embed", "norm_pre.")):
            assert g["lr_scale"] == decay ** (depth + 1), name
        elif name.startswith("blocks."):
            assert g["lr_scale"] == decay ** (depth - int(name.split(".")[1])), name
        else:
            assert name.startswith(("norm.", "attn_pool.", "head.")) and g["lr_scale"] == 1.0, name
        no_decay = p.ndim <= 1 or name in ("reg_token", "pos_embed", "attn_pool.latent")
        assert g["weight_decay"] == (0.0 if no_decay else 0.1), name


def test_finetune_a_registers_backbone_from_a_timm_file(tmp_path, tiny):
    src = vitlab.create_model("vit_mnist", img_size=8, patch_size=2, in_chans=1, embed_dim=32, depth=2, num_heads=2,
                              mlp_dim=64, num_classes=0, act="gelu", reg_tokens=4, no_embed_class=True, init_values=0.1)
    path = save_timm(src.eval(), tmp_path / "dinov2_like.safetensors")
    cfg = load_config(CONFIGS / "finetune.yaml", tiny + [
        "model.name=null", f"model.weights={path}", "model.num_heads=2", "model.img_size=16", "model.reset_head=true",
        "data.normalize=null", "data.dev_fraction=0", "schedule.steps=3", "schedule.warmup_steps=1", "optim.lr=1e-3",
        "optim.layer_decay=0.75"])
    train(cfg, tmp_path / "run", progress=False)
    assert read_metrics(tmp_path / "run")[0]["train_loss"] == pytest.approx(math.log(10), abs=1e-5)  # new zero head
    out = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    assert out["pos_embed"].shape == (1, 8 * 8, 32) and out["reg_token"].shape == (1, 4, 32)  # 4x4 -> 8x8, no prefix
    assert out["head.weight"].shape == (10, 32)
    assert (out["blocks.0.ls1.gamma"] - src.blocks[0].ls1.gamma).abs().max() < 0.01  # fine-tuned, not re-initialised
    back = vitlab.load_model(tmp_path / "run")
    assert back.cfg.reg_tokens == 4 and back.cfg.init_values is not None and back.cfg.img_size == (16, 16)


def test_fsdp_two_processes_equal_one_for_every_switch(tmp_path, tiny, spawn):
    steps = ["schedule.epochs=1", "data.train_limit=128", "schedule.warmup_steps=2", "optim.layer_decay=0.75",
             "train.strategy=fsdp", "model.drop_path_rate=0.1"] + SWITCHES
    p = spawn("torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "vitlab", "train", "--out",
              str(tmp_path / "two"), "--no-progress", *tiny, *steps)
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    train(load_config(None, tiny + steps + ["data.accum_steps=2"]), tmp_path / "one", progress=False)
    a, b = (load_file(str(tmp_path / r / "model" / "model.safetensors")) for r in ("two", "one"))
    assert a.keys() == b.keys() and {"reg_token", "attn_pool.latent", "blocks.0.ls1.gamma", "norm_pre.weight"} <= a.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
