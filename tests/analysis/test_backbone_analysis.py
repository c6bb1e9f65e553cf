"""Analyses on today's backbones: rollout read as the classifier reads (class token with registers left out,
patch mean, MAP head's attention), the registers paper's token norms and outlier share, `vitlab analyze`,
`vitlab fewshot` on attention-pooled features, and `vitlab serve`'s prediction."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import vitlab
from vitlab import cli
from vitlab.analysis import analyze, attention_pass, attention_rollout, high_norm_share, rollout_matrix, token_norms

GRID = (3, 3)


def _model(**kw):
    torch.manual_seed(0)
    cfg = dict(img_size=12, patch_size=4, num_classes=3, embed_dim=32, depth=2, num_heads=2, mlp_dim=64)
    m = vitlab.VisionTransformer(vitlab.ViTConfig(**{**cfg, **kw})).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, 0.5)
    return m


def _attn(b, t, layers=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(b, 2, t, t, generator=g).softmax(-1) for _ in range(layers)]


def test_rollout_readouts_with_registers_and_map_head():
    p, n = 3, 9  # class token + 2 registers, 3x3 patches
    attns = _attn(2, p + n)
    r = rollout_matrix(attns)
    np.testing.assert_allclose(attention_rollout(attns, p, GRID, readout="token").reshape(2, n), r[:, 0, p:])
    np.testing.assert_allclose(attention_rollout(attns, p, GRID, readout="mean").reshape(2, n), r[:, p:, p:].mean(1))
    pool = torch.rand(2, 2, 1, n).softmax(-1)
    w = pool.double().mean(1)[:, 0].numpy()
    want = np.einsum("bj,bjk->bk", w, r[:, p:, p:])
    np.testing.assert_allclose(attention_rollout(attns, p, GRID, readout=pool).reshape(2, n), want, rtol=1e-12)
    with pytest.raises(ValueError, match="patch tokens"):
        attention_rollout(attns, p, GRID, readout=pool[:, :, :, :4])


@pytest.mark.parametrize("kw, readout", [(dict(reg_tokens=2, no_embed_class=True), "token"),
                                         (dict(classifier="gap", reg_tokens=2), "mean"),
                                         (dict(classifier="map"), "map")])
def test_attention_pass_gives_the_classifiers_readout(kw, readout):
    m = _model(**kw)
    x = torch.randn(2, 3, 12, 12)
    out = attention_pass(m, x)
    assert torch.allclose(out.logits, m(x), atol=1e-5)
    if readout == "map":
        assert out.readout.shape == (2, 2, 1, 9)
    else:
        assert out.readout == readout
    assert attention_rollout(out.attentions, m.num_prefix_tokens, out.grid_size, readout=out.readout).shape == (2, 3, 3)


def test_token_norms_and_high_norm_share():
    tokens = torch.ones(4, 1 + 25, 8)  # norm sqrt(8) everywhere ...
    tokens[0, 1 + 7] *= 10  # ... but one patch of 100, ten times the median
    tokens[:, 0] *= 3
    patches, prefix = token_norms(tokens, 1, (5, 5))
    assert patches.shape == (4, 5, 5) and prefix.shape == (4, 1)
    np.testing.assert_allclose(prefix, 3 * np.sqrt(8), rtol=1e-6)
    threshold, share = high_norm_share(patches)
    assert threshold == pytest.approx(3 * np.sqrt(8)) and share == pytest.approx(1 / 100)
    with pytest.raises(ValueError, match="tokens"):
        token_norms(tokens, 2, (5, 5))


@pytest.mark.parametrize("kw", [dict(reg_tokens=4, no_embed_class=True, init_values=0.5), dict(classifier="map")],
                         ids=["registers", "map"])
def test_analyze_a_backbone_writes_token_norms(tmp_path, kw):
    m = _model(**kw)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 3, 12, 12), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x_test=images, y_test=np.arange(6) % 3)
    summary = analyze(m, str(tmp_path / "d.npz"), tmp_path / "out", num_images=6, batch_size=4, num_rollout=2,
                      n_components=4)
    norms = json.loads((tmp_path / "out" / "token_norms.json").read_text())
    assert (tmp_path / "out" / "token_norms.png").is_file() and len(norms["maps"]) == 2
    assert set(norms["median_prefix_norms"]) == ({"class token", *(f"register {i}" for i in range(4))}
                                                 if "reg_tokens" in kw else set())
    assert summary["high_norm_share"] == norms["high_norm_share"]
    shown = json.loads((tmp_path / "out" / "rollout.json").read_text())["indices"]  # analyze's fixed random sample
    x = torch.from_numpy(images[shown]).float() / 255 * 2 - 1
    want = token_norms(m.forward_intermediates(x, indices=1).tokens[-1], m.num_prefix_tokens, GRID)[0]
    np.testing.assert_allclose(norms["maps"], want, rtol=1e-5)
    assert "Token norms" in (tmp_path / "out" / "index.md").read_text()


def test_fewshot_probes_the_attention_pooled_features(tmp_path, capsys):
    m = vitlab.create_model("vit_mnist", img_size=8, patch_size=2, in_chans=1, embed_dim=32, depth=1, num_heads=2,
                            mlp_dim=64, num_classes=0, classifier="map", reg_tokens=1, mean=(0.3,), std=(0.4,))
    m.save_pretrained(tmp_path / "m")
    out = tmp_path / "fewshot.json"
    assert cli.main(["fewshot", str(tmp_path / "m"), "--data", "digits", "--shots", "5", "--seeds", "0",
                     "--max-test", "100", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["feature_dim"] == 32 and report["results"][0]["mean"] > 15  # above chance (10%)


def test_serve_predicts_with_a_map_backbone(tmp_path):
    from vitlab.serve.app import build_explorer

    m = _model(classifier="map", reg_tokens=2, class_names=("a", "b", "c"))
    m.save_pretrained(tmp_path / "m")
    explorer = build_explorer(tmp_path / "m", device="cpu")
    result = explorer.predict(Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 16, 3), dtype=np.uint8)))
    assert result["class_token"] is False and np.shape(result["rollout"]) == (3, 3)
    assert np.shape(result["attention"]) == (2, 2, 9)
