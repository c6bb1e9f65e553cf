"""Official Google .npz files: built here by hand from known arrays, checked against a numpy forward pass
written from the official (Flax) semantics, independent of vitlab's converter."""
import logging

import numpy as np
import pytest
import scipy.ndimage
import torch

import vitlab
from vitlab.weights import load_model, load_weights, save_npz

D, H, HD, MLP, DEPTH, P, C = 32, 4, 8, 64, 2, 8, 3
NAMES = {"linen": ("LayerNorm_0", "MultiHeadDotProductAttention_0", "LayerNorm_1", "MlpBlock_0"),
         "pre-linen": ("LayerNorm_0", "MultiHeadDotProductAttention_1", "LayerNorm_2", "MlpBlock_3")}


def make_official(rng, grid=4, classes=5, pre_logits=None, names="linen"):
    """An official-layout dict: HWIO patch kernel, (D, H, hd) q/k/v kernels, (in, out) dense kernels."""
    r = lambda *s: rng.normal(0, 0.3, s).astype(np.float32)  # noqa: E731
    ln1, att, ln2, mlp = NAMES[names]
    a = {"embedding/kernel": r(P, P, C, D), "embedding/bias": r(D), "cls": r(1, 1, D),
         "Transformer/posembed_input/pos_embedding": r(1, grid * grid + 1, D),
         "Transformer/encoder_norm/scale": 1 + r(D), "Transformer/encoder_norm/bias": r(D)}
    for i in range(DEPTH):
        b = f"Transformer/encoderblock_{i}/"
        for ln in (ln1, ln2):
            a[f"{b}{ln}/scale"], a[f"{b}{ln}/bias"] = 1 + r(D), r(D)
        for n in ("query", "key", "value"):
            a[f"{b}{att}/{n}/kernel"], a[f"{b}{att}/{n}/bias"] = r(D, H, HD), r(H, HD)
        a[f"{b}{att}/out/kernel"], a[f"{b}{att}/out/bias"] = r(H, HD, D), r(D)
        a[f"{b}{mlp}/Dense_0/kernel"], a[f"{b}{mlp}/Dense_0/bias"] = r(D, MLP), r(MLP)
        a[f"{b}{mlp}/Dense_1/kernel"], a[f"{b}{mlp}/Dense_1/bias"] = r(MLP, D), r(D)
    rep = D
    if pre_logits:
        a["pre_logits/kernel"], a["pre_logits/bias"], rep = r(D, pre_logits), r(pre_logits), pre_logits
    a["head/kernel"], a["head/bias"] = r(rep, classes), r(classes)
    return a


def reference_forward(a, x, names="linen"):
    """The official model in numpy: NHWC input, tanh GELU, LayerNorm eps 1e-6."""
    ln1, att, ln2, mlp = NAMES[names]
    x = x.transpose(0, 2, 3, 1).astype(np.float64)  # NCHW -> NHWC as the Flax code takes it
    k = a["embedding/kernel"]
    B, Hh, Ww, _ = x.shape
    g = Hh // P
    patches = x.reshape(B, g, P, g, P, C).transpose(0, 1, 3, 2, 4, 5).reshape(B, g * g, P, P, C)
    t = np.einsum("bnijc,ijcd->bnd", patches, k) + a["embedding/bias"]
    t = np.concatenate([np.broadcast_to(a["cls"], (B, 1, D)), t], 1) + a["Transformer/posembed_input/pos_embedding"]

    def ln(v, pre):
        mu, var = v.mean(-1, keepdims=True), v.var(-1, keepdims=True)
        return (v - mu) / np.sqrt(var + 1e-6) * a[pre + "/scale"] + a[pre + "/bias"]

    gelu = lambda v: 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v**3)))  # noqa: E731
    for i in range(DEPTH):
        b = f"Transformer/encoderblock_{i}/"
        y = ln(t, b + ln1)
        q, kk, v = (np.einsum("bnd,dhk->bnhk", y, a[f"{b}{att}/{n}/kernel"]) + a[f"{b}{att}/{n}/bias"]
                    for n in ("query", "key", "value"))
        w = np.einsum("bqhk,bshk->bhqs", q, kk) / np.sqrt(HD)
        w = np.exp(w - w.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        o = np.einsum("bhqs,bshk->bqhk", w, v)
        t = t + np.einsum("bqhk,hkd->bqd", o, a[f"{b}{att}/out/kernel"]) + a[f"{b}{att}/out/bias"]
        y = ln(t, b + ln2)
        y = gelu(y @ a[f"{b}{mlp}/Dense_0/kernel"] + a[f"{b}{mlp}/Dense_0/bias"])
        t = t + y @ a[f"{b}{mlp}/Dense_1/kernel"] + a[f"{b}{mlp}/Dense_1/bias"]
    z = ln(t, "Transformer/encoder_norm")[:, 0]
    if "pre_logits/kernel" in a:
        z = np.tanh(z @ a["pre_logits/kernel"] + a["pre_logits/bias"])
    return z @ a["head/kernel"] + a["head/bias"]


def write(tmp_path, a, name="ViT-T.npz"):
    path = tmp_path / name
    np.savez(path, **a)
    return path


@pytest.mark.parametrize("names", ["linen", "pre-linen"])
@pytest.mark.parametrize("pre_logits", [None, 24])
def test_official_npz_loads_exactly(tmp_path, names, pre_logits):
    rng = np.random.default_rng(1)
    a = make_official(rng, pre_logits=pre_logits, names=names)
    model = load_model(write(tmp_path, a))
    assert (model.cfg.num_heads, model.cfg.act, model.cfg.norm_eps, model.cfg.img_size) == (H, "gelu_tanh", 1e-6, (32, 32))
    assert model.cfg.representation_size == pre_logits
    x = rng.normal(size=(2, C, 32, 32)).astype(np.float32)
    with torch.no_grad():
        got = model(torch.from_numpy(x)).double().numpy()
    np.testing.assert_allclose(got, reference_forward(a, x, names), atol=1e-5, rtol=0)


def test_official_pos_embed_resampled_like_scipy_zoom(tmp_path, caplog):
    rng = np.random.default_rng(2)
    a = make_official(rng, grid=4)
    model = vitlab.VisionTransformer(vitlab.ViTConfig(img_size=48, patch_size=P, embed_dim=D, depth=DEPTH,
                                                      num_heads=H, mlp_dim=MLP, num_classes=5))
    with caplog.at_level(logging.WARNING, logger="vitlab.weights"):
        report = load_weights(model, write(tmp_path, a))
    assert any("resampled from grid 4x4 to 6x6" in n for n in report["notes"])
    assert "resampled" in caplog.text
    pos = a["Transformer/posembed_input/pos_embedding"]
    grid = pos[0, 1:].reshape(4, 4, D).astype(np.float64)
    expected = scipy.ndimage.zoom(grid, (6 / 4, 6 / 4, 1), order=1).reshape(1, 36, D)
    got = model.pos_embed.detach().double().numpy()
    np.testing.assert_allclose(got[:, 1:], expected, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(got[:, :1], pos[:, :1])


def test_official_head_replaced_when_classes_differ(tmp_path):
    rng = np.random.default_rng(3)
    a = make_official(rng, classes=5)
    model = vitlab.VisionTransformer(vitlab.ViTConfig(img_size=32, patch_size=P, embed_dim=D, depth=DEPTH,
                                                      num_heads=H, mlp_dim=MLP, num_classes=7))
    report = load_weights(model, write(tmp_path, a))
    assert any("head (5 classes) replaced" in n for n in report["notes"])
    assert model.head.weight.shape == (7, D) and not model.head.weight.any() and not model.head.bias.any()
    np.testing.assert_array_equal(model.norm.weight.detach().numpy(), a["Transformer/encoder_norm/scale"])


def test_official_21k_pre_logits_dropped_for_fine_tuning(tmp_path):
    rng = np.random.default_rng(4)
    a = make_official(rng, classes=9, pre_logits=D)
    model = vitlab.VisionTransformer(vitlab.ViTConfig(img_size=32, patch_size=P, embed_dim=D, depth=DEPTH,
                                                      num_heads=H, mlp_dim=MLP, num_classes=3))
    report = load_weights(model, write(tmp_path, a))
    assert model.pre_logits is None and not model.head.weight.any()
    assert any("pre-logits layer and head dropped" in n for n in report["notes"])
    assert report["missing"] == report["unexpected"] == report["mismatched"] == []


@pytest.mark.parametrize("names", ["linen", "pre-linen"])
def test_npz_export_matches_the_official_forward(tmp_path, names):
    """Our exporter's file, run through the independent numpy forward, gives the model's logits."""
    model = vitlab.VisionTransformer(vitlab.ViTConfig(img_size=32, patch_size=P, embed_dim=D, depth=DEPTH,
                                                      num_heads=H, mlp_dim=MLP, num_classes=6, representation_size=16))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    path = save_npz(model, tmp_path / "out.npz", names=names)
    with np.load(path) as z:
        a = {k: z[k] for k in z.files}
    assert a["embedding/kernel"].shape == (P, P, C, D)
    assert a[f"Transformer/encoderblock_0/{NAMES[names][1]}/query/kernel"].shape == (D, H, HD)
    x = np.random.default_rng(5).normal(size=(2, C, 32, 32)).astype(np.float32)
    with torch.no_grad():
        got = model.eval()(torch.from_numpy(x)).double().numpy()
    np.testing.assert_allclose(got, reference_forward(a, x, names), atol=1e-5, rtol=0)


@pytest.mark.parametrize("options, problem", [
    ({"act": "gelu"}, "the official code has no act='gelu' (only 'gelu_tanh'); export"),
    ({"pos_embed": "sincos"}, "the official code has no pos_embed='sincos' (only 'learn'); export"),
    ({"pos_embed": "sincos", "act": "relu"}, "no pos_embed='sincos' (only 'learn') and no act='relu' (only 'gelu_tanh')"),
])
def test_npz_export_names_only_what_the_official_code_lacks(tmp_path, options, problem):
    model = vitlab.VisionTransformer(vitlab.ViTConfig(img_size=32, patch_size=P, embed_dim=D, depth=1, num_heads=H,
                                                      mlp_dim=MLP, num_classes=2, **options))
    with pytest.raises(ValueError) as e:
        save_npz(model, tmp_path / "out.npz")
    msg = str(e.value)
    assert problem in msg and {k for k in ("pos_embed", "act") if f"{k}=" in msg} == set(options)  # nothing else


def test_hybrid_resnet_keys_go_to_the_hybrid_converter(monkeypatch):
    """conv_root/gn_root/block{s} arrays are handed to official_hybrid; the 1x1 embedding is the token conv."""
    import sys
    import types

    from vitlab.weights.official import official_to_vitlab

    seen = {}

    def hybrid_to_vitlab(arrays):
        seen.update(arrays)
        return {"patch_embed.backbone.stem.conv.weight": torch.zeros(64, 3, 7, 7)}

    monkeypatch.setitem(sys.modules, "vitlab.weights.official_hybrid", types.SimpleNamespace(hybrid_to_vitlab=hybrid_to_vitlab))
    rng = np.random.default_rng(6)
    a = make_official(rng)
    a["embedding/kernel"] = rng.normal(size=(1, 1, 256, D)).astype(np.float32)
    resnet = {"conv_root/kernel": np.zeros((7, 7, 3, 64)), "gn_root/scale": np.ones(64),
              "block1/unit1/conv1/kernel": np.zeros((1, 1, 64, 64))}
    out = official_to_vitlab({**a, **resnet})
    assert set(seen) == set(resnet)
    assert "patch_embed.backbone.stem.conv.weight" in out
    np.testing.assert_array_equal(out["patch_embed.proj.weight"].numpy(), a["embedding/kernel"].transpose(3, 2, 0, 1))
