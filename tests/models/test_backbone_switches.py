"""Today's backbone switches of ViTConfig (registers, LayerScale, MAP head, pre-norm, QK-norm, SwiGLU,
quick-GELU): what each computes, the gradients the key-bias rule gives, and the registry names."""
import pytest
import torch

import vitlab
from vitlab.models.registry import get_config, list_models
from vitlab.models.vit import Attention, ViTConfig, VisionTransformer

TINY = dict(img_size=16, patch_size=4, num_classes=5, embed_dim=32, depth=2, num_heads=2, mlp_dim=64, act="gelu")
SWITCHES = {
    "dinov2_reg": dict(reg_tokens=3, no_embed_class=True, init_values=0.5),
    "dinov2": dict(init_values=0.5),
    "siglip": dict(classifier="map", act="gelu_tanh"),
    "clip": dict(pre_norm=True, patch_bias=False, act="quick_gelu", norm_eps=1e-5),
    "qk_norm_swiglu": dict(qk_norm=True, act="swiglu", reg_tokens=1),
    "gap_reg": dict(classifier="gap", reg_tokens=2),
}


def model(**kw) -> VisionTransformer:
    torch.manual_seed(0)
    m = VisionTransformer(ViTConfig(**{**TINY, **kw}))
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, 0.3)
    return m.eval()


X = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def test_new_fields_default_to_the_2020_model():
    cfg = ViTConfig()
    assert (cfg.reg_tokens, cfg.no_embed_class, cfg.init_values, cfg.pre_norm, cfg.patch_bias, cfg.qk_norm) == \
        (0, False, None, False, True, False)
    keys = set(VisionTransformer(ViTConfig(**TINY)).state_dict())
    assert not any(k.startswith(("reg_token", "norm_pre", "attn_pool")) or ".ls" in k or "_norm." in k for k in keys)


@pytest.mark.parametrize("name", list(SWITCHES))
def test_forward_is_head_of_features_and_intermediates_agree(name):
    m = model(**SWITCHES[name])
    with torch.no_grad():
        logits = m(X)  # the token classifier's last block computes only the class token
        assert torch.allclose(logits, m.forward_head(m.forward_features(X)), atol=1e-5)
        inter = m.forward_intermediates(X, return_attention=True)
    n = m.num_prefix_tokens + 16
    assert inter.features.shape == (3, n, 32) and all(a.shape == (3, 2, n, n) for a in inter.attentions)
    assert torch.equal(inter.features, m.forward_features(X))
    if m.cfg.classifier == "map":
        assert inter.pool_attention.shape == (3, 2, 1, 16)
        assert torch.allclose(inter.pool_attention.sum(-1), torch.ones(3, 2, 1))
    else:
        assert inter.pool_attention is None


def test_registers_and_class_token_positions():
    m = model(**SWITCHES["dinov2_reg"])
    assert m.num_prefix_tokens == 4 and m.num_pos_prefix == 0 and m.pos_embed.shape == (1, 16, 32)
    x = torch.zeros(1, 16, 32)
    tokens = m._pos_embed(x, m.grid)
    assert torch.equal(tokens[0, 0], m.cls_token[0, 0]) and torch.equal(tokens[0, 1:4], m.reg_token[0])
    assert torch.equal(tokens[0, 4:], m.pos_embed[0])
    with_cls = model(reg_tokens=2)  # no_embed_class=False: every prefix token has its entry
    assert with_cls.pos_embed.shape == (1, 3 + 16, 32)


def test_layerscale_scales_the_residual_branches():
    m = model(**SWITCHES["dinov2"])
    with torch.no_grad():
        for blk in m.blocks:
            blk.ls1.gamma.zero_()
            blk.ls2.gamma.zero_()
        x, _ = m._embed(X)
        assert torch.allclose(m.forward_features(X), m.norm(x))  # zero gammas: every block is the identity


def test_swiglu_and_quick_gelu_compute_their_definitions():
    m = model(act="swiglu")
    mlp, x = m.blocks[0].mlp, torch.randn(2, 5, 32)
    assert mlp.fc1.out_features == 128 and mlp.fc2.in_features == 64
    a, b = mlp.fc1(x).chunk(2, -1)
    assert torch.allclose(mlp(x), mlp.fc2(torch.nn.functional.silu(a) * b))
    q = model(act="quick_gelu").blocks[0].mlp.act
    assert torch.allclose(q(x), x * torch.sigmoid(1.702 * x))


def test_key_bias_gradient_zero_without_qk_norm_kept_with_it():
    """Without QK-norm the key bias shifts every score of a query equally (softmax ignores it): exact gradient
    zero, so it is detached (also in the MAP head's kv projection). QK-norm normalises the keys after the bias,
    so there the bias matters and must train."""
    for qk_norm in (False, True):
        m = model(classifier="map", qk_norm=qk_norm).train()
        m(X).square().sum().backward()
        D = 32
        g = m.blocks[0].attn.qkv.bias.grad
        assert g[:D].abs().sum() > 0 and g[2 * D:].abs().sum() > 0
        assert (g[D:2 * D].abs().sum() > 0) == qk_norm
        assert not m.attn_pool.kv.bias.grad[:D].any() and m.attn_pool.kv.bias.grad[D:].abs().sum() > 0
    assert Attention(8, 2, qk_norm=True).q_norm.normalized_shape == (4,)


def test_resampled_no_embed_class_model_equals_dynamic_forward():
    m = model(**SWITCHES["dinov2_reg"], pos_resample="bicubic_aa", dynamic_img_size=True)
    x = torch.randn(2, 3, 24, 20)
    with torch.no_grad():
        want = m.forward_features(x)
        m.set_input_size((24, 20))
        assert torch.equal(m.forward_features(x), want)


def test_reset_classifier_keeps_the_pool():
    m = model(**SWITCHES["siglip"], num_classes=0)
    pooled = m(X)
    m.reset_classifier(4)
    assert m(X).shape == (3, 4) and torch.equal(m.forward_head(m.forward_features(X), pre_logits=True), pooled)


def test_registry_names_build_and_keep_their_shape():
    names = {n for n in list_models() if n.endswith(("_dinov2", "_clip")) or "_siglip_" in n}
    assert len(names) == 8 + 5 + 2
    for n in names:
        cfg = get_config(n)
        assert cfg.num_classes == 0 and cfg.pos_resample == "bicubic_aa"
        with torch.device("meta"):
            vitlab.create_model(n)
    assert get_config("vit_g14_reg4_dinov2").act == "swiglu" and get_config("vit_so400m14_siglip_224").mlp_dim == 4304


def test_masked_patch_encoder_runs_the_backbone_switches():
    """With nothing replaced (mask_prob = random_prob = 0) the pretext encoder is forward_features: pre-norm,
    registers and LayerScale included."""
    from vitlab.models.masked import MaskedPatchPredictor

    m = model(pre_norm=True, reg_tokens=2, init_values=0.5)
    pred = MaskedPatchPredictor(m, corrupt_ratio=0.5, mask_prob=0.0, random_prob=0.0).eval()
    with torch.no_grad():
        out = pred(X)
        want = pred.head(m.forward_features(X)[:, m.num_prefix_tokens:][out.mask])
    assert torch.allclose(out.logits, want, atol=1e-5)
