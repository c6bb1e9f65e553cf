"""ResNet hybrids: published sizes, TF SAME padding, gradients, dynamic sizes, intermediates, save/load."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vitlab import create_model, from_pretrained
from vitlab.models.resnet import MaxPool2dSame, StdConv2d, same_padding

# Paper / official-code parameter counts at 224px with 1000 classes (REFERENCE.md section 2). R+ViT-Ti/16
# is timm's vit_tiny_r_s16_p8_224, published as 6.34M parameters.
TABLE = {
    "r50_vit_b16": 98_659_112,
    "r26_vit_s32": 36_431_912,
    "r26_vit_b32": 101_383_976,
    "r50_vit_l32": 328_994_856,
    "r_vit_ti16": 6_337_704,
}
TINY = dict(embed_dim=32, depth=2, num_heads=2, mlp_dim=64, num_classes=5)


def tf_same(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


@pytest.mark.parametrize("name", sorted(TABLE))
def test_hybrid_parameter_counts_match_published_table(name):
    with torch.device("meta"):
        model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == TABLE[name]


def test_same_padding_matches_tf_formula_for_odd_and_even_sizes():
    assert same_padding(8, 3, 2) == (0, 1)  # even input: the extra pixel goes after
    assert same_padding(7, 3, 2) == (1, 1)
    assert same_padding(224, 7, 2) == (2, 3)
    for size in range(5, 13):
        for k in (1, 3, 7):
            for s in (1, 2):
                assert same_padding(size, k, s) == tf_same(size, k, s)
                assert same_padding(size, k, s, 2) == tf_same(size, k, s, 2)


@pytest.mark.parametrize("size", [(9, 12), (10, 7)])
@pytest.mark.parametrize("k,s", [(7, 2), (3, 2), (3, 1), (1, 2)])
def test_std_conv_and_pool_equal_explicit_padding_and_standardisation(size, k, s):
    h, w = size
    conv = StdConv2d(4, 6, k, stride=s)
    x = torch.randn(2, 4, h, w)
    (t, b), (l, r) = tf_same(h, k, s), tf_same(w, k, s)
    wt = conv.weight.detach().numpy().astype(np.float64)
    mean = wt.mean(axis=(1, 2, 3), keepdims=True)
    std = wt.std(axis=(1, 2, 3), keepdims=True)  # population std; official eps 1e-5 added to it
    w_std = torch.from_numpy((wt - mean) / (std + 1e-5)).float()
    ref = F.conv2d(F.pad(x, (l, r, t, b)), w_std, stride=s)
    out = conv(x)
    assert out.shape[-2:] == (math.ceil(h / s), math.ceil(w / s))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    pool = MaxPool2dSame(k, s)
    (t, b), (l, r) = tf_same(h, k, s), tf_same(w, k, s)
    ref_pool = F.max_pool2d(F.pad(x, (l, r, t, b), value=float("-inf")), k, s)
    torch.testing.assert_close(pool(x), ref_pool)
    assert torch.isfinite(pool(x - 100)).all()  # padding never wins, even for negative inputs


def test_gradients_reach_every_parameter():
    model = create_model("r50_vit_b16", backbone_layers=(1, 1), img_size=32, **TINY)
    with torch.no_grad():  # zero-initialised head and gn3 scales would block every upstream gradient
        model.head.weight.normal_(std=0.1)
        for name, p in model.named_parameters():
            if name.endswith("norm3.weight"):
                p.fill_(1.0)
    model(torch.randn(2, 3, 32, 32)).square().sum().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


def test_hybrid_initialisation_follows_official_code():
    model = create_model("r50_vit_b16", backbone_layers=(1, 1), img_size=32, **TINY)
    unit = model.patch_embed.backbone.stages[1].blocks[0]
    assert torch.all(unit.norm3.weight == 0) and torch.all(unit.norm1.weight == 1)  # gn3 scale init 0
    assert unit.norm1.eps == 1e-6 and unit.norm1.num_groups == 32
    assert unit.conv2.stride == (2, 2) and unit.conv1.stride == (1, 1)  # stride on the 3x3
    assert unit.downsample is not None and model.patch_embed.backbone.stages[1].blocks[0].downsample.conv.stride == (2, 2)


def test_dynamic_sizes_and_intermediates_for_hybrids():
    model = create_model("r50_vit_b16", backbone_layers=(1, 1), img_size=32, dynamic_img_size=True, **TINY).eval()
    for h, w in [(32, 32), (33, 47), (48, 24)]:
        out = model.forward_intermediates(torch.randn(1, 3, h, w), indices=[-1], return_attention=True)
        grid = (math.ceil(h / 8), math.ceil(w / 8))
        assert out.grid_size == grid
        assert out.features.shape == (1, 1 + grid[0] * grid[1], 32)
        assert len(out.tokens) == 1 and out.attentions[0].shape == (1, 2, out.features.shape[1], out.features.shape[1])
        assert model(torch.randn(1, 3, h, w)).shape == (1, 5)
    strict = create_model("r50_vit_b16", backbone_layers=(1, 1), img_size=32, **TINY)
    with pytest.raises(ValueError, match="set_input_size"):
        strict(torch.randn(1, 3, 40, 40))
    strict.set_input_size(40)
    assert strict.pos_embed.shape[1] == 1 + 5 * 5 and strict(torch.randn(1, 3, 40, 40)).shape == (1, 5)


def test_root_only_hybrid_patches_and_bad_sizes():
    model = create_model("r_vit_ti16", img_size=64, dynamic_img_size=True, **TINY)
    assert set(k for k in model.state_dict() if "backbone" in k) == {
        "patch_embed.backbone.conv.weight", "patch_embed.backbone.norm.weight", "patch_embed.backbone.norm.bias"}
    assert model.patch_embed.grid_size((224, 224)) == (7, 7)  # 224 / 4 (root) / 8 (patch)
    assert model(torch.randn(1, 3, 96, 64)).shape == (1, 5)
    with pytest.raises(ValueError, match="multiple of 32"):
        model(torch.randn(1, 3, 80, 64))
    with pytest.raises(ValueError, match="channels"):
        model(torch.randn(1, 1, 64, 64))


def test_hybrid_save_pretrained_round_trip(tmp_path):
    model = create_model("r26_vit_s32", backbone_layers=(1, 1), img_size=32, **TINY).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(tmp_path / "hybrid")
    loaded = from_pretrained(tmp_path / "hybrid").eval()
    assert loaded.cfg == model.cfg
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
