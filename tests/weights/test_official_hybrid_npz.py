"""Official ResNet-hybrid .npz arrays <-> vitlab: exact loading (both GroupNorm layouts), the forward pass
against a NumPy re-implementation of the official root + unit, and end-to-end loading of a whole file."""
import math

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

import vitlab
from vitlab import create_model
from vitlab.models.pretrained import check_and_load
from vitlab.weights.official import vitlab_to_official
from vitlab.weights.official_hybrid import hybrid_from_vitlab, hybrid_to_vitlab

TINY = dict(embed_dim=32, depth=1, num_heads=2, mlp_dim=64, num_classes=5)


def official_resnet_arrays(layers, width=64, in_chans=3, old_gn=False, seed=0):
    """Random arrays named and shaped like the official hybrid checkpoints (HWIO kernels)."""
    rng = np.random.default_rng(seed)
    gn_shape = (lambda c: (1, 1, 1, c)) if old_gn else (lambda c: (c,))
    a = {"conv_root/kernel": rng.normal(size=(7, 7, in_chans, width)).astype(np.float32)}

    def gn(name, c):
        a[f"{name}/scale"] = rng.uniform(0.5, 1.5, gn_shape(c)).astype(np.float32)
        a[f"{name}/bias"] = rng.normal(0, 0.1, gn_shape(c)).astype(np.float32)

    gn("gn_root", width)
    chs = width
    for s, depth in enumerate(layers, 1):
        mid = width * 2 ** (s - 1)
        for u in range(1, depth + 1):
            p = f"block{s}/unit{u}/"
            for name, shape in (("conv1", (1, 1, chs, mid)), ("conv2", (3, 3, mid, mid)), ("conv3", (1, 1, mid, 4 * mid))):
                a[p + name + "/kernel"] = rng.normal(size=shape).astype(np.float32)
            gn(p + "gn1", mid), gn(p + "gn2", mid), gn(p + "gn3", 4 * mid)
            if u == 1:
                a[p + "conv_proj/kernel"] = rng.normal(size=(1, 1, chs, 4 * mid)).astype(np.float32)
                gn(p + "gn_proj", 4 * mid)
            chs = 4 * mid
    return a


# --- NumPy reference of the official Flax code (NHWC activations, HWIO kernels) ----------------------


def _same(n, k, s):
    total = max((math.ceil(n / s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def np_conv(x, kernel, stride=1):
    k = kernel.astype(np.float64)
    k = (k - k.mean((0, 1, 2))) / (k.std((0, 1, 2)) + 1e-5)  # StdConv: std + 1e-5
    kh, kw = k.shape[:2]
    xp = np.pad(x, ((0, 0), _same(x.shape[1], kh, stride), _same(x.shape[2], kw, stride), (0, 0)))
    win = sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::stride, ::stride]
    return np.einsum("nhwcij,ijco->nhwo", win, k)


def np_gn(x, scale, bias, groups=32, eps=1e-6):
    n, h, w, c = x.shape
    g = x.reshape(n, h, w, groups, c // groups)
    g = (g - g.mean((1, 2, 4), keepdims=True)) / np.sqrt(g.var((1, 2, 4), keepdims=True) + eps)
    return g.reshape(n, h, w, c) * scale.reshape(-1) + bias.reshape(-1)


def np_forward(a, x, layers):
    relu = lambda t: np.maximum(t, 0)  # noqa: E731
    y = relu(np_gn(np_conv(x, a["conv_root/kernel"], 2), a["gn_root/scale"], a["gn_root/bias"]))
    y = np.pad(y, ((0, 0), _same(y.shape[1], 3, 2), _same(y.shape[2], 3, 2), (0, 0)), constant_values=-np.inf)
    y = sliding_window_view(y, (3, 3), axis=(1, 2))[:, ::2, ::2].max(axis=(-2, -1))
    for s, depth in enumerate(layers, 1):
        for u in range(1, depth + 1):
            p, stride = f"block{s}/unit{u}/", 2 if s > 1 and u == 1 else 1
            res = y
            if p + "conv_proj/kernel" in a:
                res = np_gn(np_conv(y, a[p + "conv_proj/kernel"], stride), a[p + "gn_proj/scale"], a[p + "gn_proj/bias"])
            z = relu(np_gn(np_conv(y, a[p + "conv1/kernel"]), a[p + "gn1/scale"], a[p + "gn1/bias"]))
            z = relu(np_gn(np_conv(z, a[p + "conv2/kernel"], stride), a[p + "gn2/scale"], a[p + "gn2/bias"]))
            z = np_gn(np_conv(z, a[p + "conv3/kernel"]), a[p + "gn3/scale"], a[p + "gn3/bias"])
            y = relu(res + z)
    return y


# --- tests -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("old_gn", [False, True])
def test_official_arrays_load_exactly_and_round_trip(old_gn):
    arrays = official_resnet_arrays((1, 2), old_gn=old_gn)
    state = hybrid_to_vitlab(arrays)
    model = create_model("r50_vit_b16", backbone_layers=(1, 2), img_size=32, **TINY)
    full = {**model.state_dict(), **state}
    report = check_and_load(model, full, source="test", strict=True)
    assert report == {"missing": [], "unexpected": [], "mismatched": []}
    own = model.state_dict()
    bb = "patch_embed.backbone."
    np.testing.assert_array_equal(own[bb + "stem.conv.weight"].numpy(), arrays["conv_root/kernel"].transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(own[bb + "stages.1.blocks.0.downsample.norm.weight"].numpy(),
                                  arrays["block2/unit1/gn_proj/scale"].reshape(-1))
    np.testing.assert_array_equal(own[bb + "stages.1.blocks.1.conv2.weight"].numpy(),
                                  arrays["block2/unit2/conv2/kernel"].transpose(3, 2, 0, 1))
    back = hybrid_from_vitlab({k: v for k, v in own.items() if k.startswith(bb)})
    assert set(back) == set(arrays)
    for k, v in arrays.items():
        np.testing.assert_array_equal(back[k], v.reshape(back[k].shape))
        assert back[k].ndim in (1, 4)  # exports the current (C,) GroupNorm layout


def test_unknown_keys_are_reported_not_dropped():
    out = hybrid_to_vitlab({**official_resnet_arrays((1,)), "block1/unit1/gn9/scale": np.ones(3, np.float32)})
    assert "block1/unit1/gn9/scale" in out
    with pytest.raises(ValueError, match="stages.0.blocks.0.bogus"):
        hybrid_from_vitlab({"patch_embed.backbone.stages.0.blocks.0.bogus.weight": torch.ones(3)})


def test_forward_matches_numpy_reference_of_official_code():
    layers = (1, 1)
    arrays = official_resnet_arrays(layers)
    model = create_model("r50_vit_b16", backbone_layers=layers, img_size=32, dynamic_img_size=True, **TINY)
    model.load_state_dict({**model.state_dict(), **hybrid_to_vitlab(arrays)})
    x = np.random.default_rng(1).normal(size=(2, 19, 22, 3))  # odd and even sides: both SAME cases
    ref = np_forward(arrays, x, layers)
    with torch.no_grad():
        out = model.patch_embed.backbone(torch.from_numpy(x).float().permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    assert out.shape == ref.shape == (2, 3, 3, 512)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-4, atol=1e-4)


def test_whole_official_hybrid_file_loads_end_to_end(tmp_path):
    src = create_model("r50_vit_b16", backbone_layers=(1, 1), img_size=32, **TINY)
    vit_part = {k: v for k, v in vitlab_to_official(src.state_dict(), num_heads=2, names="pre-linen").items()
                if not k.startswith(("conv_root", "gn_root", "block"))}
    arrays = {**vit_part, **official_resnet_arrays((1, 1), old_gn=True)}
    path = tmp_path / "R50+ViT-tiny.npz"
    np.savez(path, **arrays)
    model = vitlab.load_model(path)
    assert model.cfg.backbone_layers == (1, 1) and model.cfg.in_chans == 3 and model.cfg.img_size == (32, 32)
    np.testing.assert_array_equal(model.state_dict()["patch_embed.backbone.stages.1.blocks.0.conv3.weight"].numpy(),
                                  arrays["block2/unit1/conv3/kernel"].transpose(3, 2, 0, 1))
    same = create_model("r50_vit_b16", backbone_layers=(1, 1), img_size=32, **TINY).eval()
    report = vitlab.load_weights(same, path)
    assert report["missing"] == report["unexpected"] == report["mismatched"] == []
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(same(x), model(x), rtol=0, atol=0)
