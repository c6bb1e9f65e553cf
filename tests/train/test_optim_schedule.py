"""Schedules, parameter groups (no decay on 1-D/embeddings, layer-wise lr decay) and EMA."""
import pytest
import torch

import vitlab
from vitlab.train.config import OptimSection, ScheduleSection
from vitlab.train.optim import ModelEMA, build_optimizer, lr_factor, param_groups


def test_warmup_then_cosine_or_linear():
    cos, lin = ScheduleSection(decay="cosine"), ScheduleSection(decay="linear", min_lr_ratio=0.1)
    assert [lr_factor(s, 10, 4, cos) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 10, 4, cos) == 1.0 and lr_factor(7, 10, 4, cos) == pytest.approx(0.5)
    assert lr_factor(10, 10, 4, cos) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(7, 10, 4, lin) == pytest.approx(0.1 + 0.9 * 0.5) and lr_factor(10, 10, 4, lin) == pytest.approx(0.1)


def test_param_groups_and_layer_decay():
    model = vitlab.create_model("vit_mnist", embed_dim=32, depth=2, num_heads=2, mlp_dim=64)
    groups = param_groups(model, 0.1, layer_decay=0.5)
    by_param = {id(p): g for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert by_param[id(named["pos_embed"])]["weight_decay"] == 0.0
    assert by_param[id(named["blocks.0.norm1.weight"])]["weight_decay"] == 0.0
    assert by_param[id(named["blocks.0.attn.qkv.weight"])]["weight_decay"] == 0.1
    assert by_param[id(named["patch_embed.proj.weight"])]["lr_scale"] == 0.5 ** 3
    assert by_param[id(named["blocks.1.mlp.fc1.weight"])]["lr_scale"] == 0.5
    assert by_param[id(named["head.weight"])]["lr_scale"] == 1.0
    opt = build_optimizer(model, OptimSection(name="sgd", lr=0.1, weight_decay=0.0))
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9


def test_ema_tracks_the_weights():
    model = torch.nn.Linear(2, 2)
    ema = ModelEMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.add_(1.0)
    before = ema.module.weight.clone()
    ema.update(model)  # first update: decay min(0.5, 2/11)
    d = 2 / 11
    torch.testing.assert_close(ema.module.weight, d * before + (1 - d) * model.weight)
