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


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])  # one process: ddp is the plain module
def test_layer_decay_gives_each_layer_its_documented_lr(strategy):
    """optim.layer_decay (OptimSection): block i at lr x decay^(depth - i), the embeddings (patch, class token,
    position) one power below block 0, the final norm and head at lr; the lr the optimizer applies, per
    parameter, also with every block sharded."""
    from vitlab.train import distributed as dd
    from vitlab.train import load_config
    from vitlab.train.optim import set_lr
    from vitlab.train.strategy import Strategy

    depth, decay, lr = 3, 0.5, 0.1
    cfg = load_config(None, [f"train.strategy={strategy}", f"optim.layer_decay={decay}", f"optim.lr={lr}"])
    model = vitlab.create_model("vit_mnist", embed_dim=32, depth=depth, num_heads=2, mlp_dim=64)
    d = dd.Dist()
    s = Strategy(cfg, d, 0, bf16=False)
    try:
        s.shard(model)
        opt = build_optimizer(model, cfg.optim, fused=s.fused_optimizer)
        set_lr(opt, lr)
        applied = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
        names = dict(model.named_parameters())
        assert len(applied) == len(names)
        for name, p in names.items():
            if name.startswith(("patch_embed.", "cls_token", "pos_embed")):
                power = depth + 1
            elif name.startswith("blocks."):
                power = depth - int(name.split(".")[1])
            else:
                assert name.startswith(("norm.", "head.")), name
                power = 0
            assert applied[id(p)] == pytest.approx(lr * decay**power, rel=1e-12), name
    finally:
        dd.teardown(d, agreed=True)


def test_ema_tracks_the_weights():
    model = torch.nn.Linear(2, 2)
    ema = ModelEMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.add_(1.0)
    before = ema.module.weight.clone()
    ema.update(model)  # first update: decay min(0.5, 2/11)
    d = 2 / 11
    torch.testing.assert_close(ema.module.weight, d * before + (1 - d) * model.weight)
