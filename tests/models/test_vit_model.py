"""The ViT model: sizes, official initialisation, the API people rely on, and its error messages."""
import math

import pytest
import torch

from vitlab import create_model
from vitlab.models.registry import get_config, list_models
from vitlab.models.vit import ViTConfig, VisionTransformer

TINY = dict(img_size=16, patch_size=4, in_chans=3, num_classes=5, embed_dim=32, depth=2, num_heads=2, mlp_dim=64)

# REFERENCE.md section 1 (224px, 1000 classes unless stated).
TABLE = {
    "vit_ti16": 5_717_416,
    "vit_s16": 22_050_664,
    "vit_b16": 86_567_656,
    "vit_b32": 88_224_232,
    "vit_l16": 304_326_632,
    "vit_h14": 632_045_800,
}


def tiny(**kw) -> VisionTransformer:
    return VisionTransformer(ViTConfig(**{**TINY, **kw}))


def n_params(cfg: ViTConfig) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in VisionTransformer(cfg).parameters())


def formula(cfg: ViTConfig) -> int:
    """Parameter count of a plain token-classifier ViT with learned 1-D position embeddings, by hand."""
    D, M, P, C = cfg.embed_dim, cfg.mlp_dim, cfg.patch_size, cfg.in_chans
    n = (cfg.img_size[0] // P) * (cfg.img_size[1] // P)
    block = 2 * 2 * D + (3 * D * D + 3 * D) + (D * D + D) + (D * M + M) + (M * D + D)
    return C * P * P * D + D + D + (n + 1) * D + cfg.depth * block + 2 * D + D * cfg.num_classes + cfg.num_classes


@pytest.mark.parametrize("name", sorted(TABLE))
def test_parameter_counts_equal_the_table(name):
    assert n_params(get_config(name)) == TABLE[name]


@pytest.mark.parametrize("name, paper", [("vit_g14", 1011e6), ("vit_G14", 1843e6)])
def test_g14_and_G14_have_the_scaling_paper_counts(name, paper):
    """Zhai et al. 2022, Table 2 (224px, 1000 classes) to 3 significant figures; its 4-digit figures count the
    encoder without the classifier head."""
    cfg = get_config(name)
    assert f"{n_params(cfg):.3g}" == f"{paper:.3g}"
    head = cfg.embed_dim * cfg.num_classes + cfg.num_classes
    assert round((n_params(cfg) - head) / 1e6) == paper / 1e6


def test_b16_at_384_has_the_published_count():
    assert n_params(get_config("vit_b16", img_size=384)) == 86_859_496


def test_every_plain_registry_variant_matches_the_formula():
    # not hybrids/ResNets, nor today's backbones (LayerScale, attention pool, CLIP's pre-norm: test_backbones.py)
    plain = lambda cfg: (isinstance(cfg, ViTConfig) and cfg.backbone_layers is None  # noqa: E731
                         and cfg.init_values is None and cfg.classifier == "token" and not cfg.pre_norm)
    names = [n for n in list_models() if plain(get_config(n))]
    assert {"vit_s32", "vit_b8", "vit_l32", "vit_mnist"} <= set(names)
    for name in names:
        cfg = get_config(name)
        assert n_params(cfg) == formula(cfg), name


def test_official_initialisation():
    m = tiny(head_bias_init=-10.0, num_classes=7)
    assert torch.count_nonzero(m.head.weight) == 0
    assert torch.all(m.head.bias == -10.0)
    assert torch.count_nonzero(m.cls_token) == 0
    norms = [mod for mod in m.modules() if isinstance(mod, torch.nn.LayerNorm)]
    assert len(norms) == 2 * TINY["depth"] + 1 and all(n.eps == 1e-6 for n in norms)
    act = m.blocks[0].mlp.act
    assert isinstance(act, torch.nn.GELU) and act.approximate == "tanh"
    blk = m.blocks[0]
    assert torch.count_nonzero(blk.attn.qkv.bias) == 0 and torch.count_nonzero(blk.attn.proj.bias) == 0
    assert 0 < blk.mlp.fc1.bias.abs().max() < 1e-4  # normal(std 1e-6), not zeros
    # xavier-uniform over each of q, k, v as separate D x D kernels: bound sqrt(6 / (D + D))
    bound = math.sqrt(6 / (2 * TINY["embed_dim"]))
    assert blk.attn.qkv.weight.abs().max() <= bound
    big = VisionTransformer(get_config("vit_s16"))
    assert abs(big.pos_embed.std().item() - 0.02) < 1e-3


def test_grad_checkpointing_gives_the_same_outputs_and_gradients():
    x = torch.randn(2, 3, 16, 16)
    m = tiny()
    torch.nn.init.normal_(m.head.weight)  # a zero head would make most gradients vanish
    grads = []
    for ckpt in (False, True):
        m.zero_grad()
        m.set_grad_checkpointing(ckpt)
        out = m(x)
        out.square().sum().backward()
        grads.append((out.detach(), {k: p.grad.clone() for k, p in m.named_parameters()}))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=0, atol=1e-6)
    for k, g in grads[0][1].items():
        assert g.abs().sum() > 0, k
        torch.testing.assert_close(g, grads[1][1][k], rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.parametrize("classifier", ["token", "gap"])
@pytest.mark.parametrize("ckpt", [False, True])
def test_forward_equals_the_head_on_forward_features(classifier, ckpt):
    """forward() lets the last block compute the class token alone; logits and gradients are those of
    the full encoder followed by the head."""
    m = tiny(classifier=classifier, representation_size=24).train()
    m.set_grad_checkpointing(ckpt)
    torch.nn.init.normal_(m.head.weight)
    x = torch.randn(3, 3, 16, 16)
    results = []
    for run in (m.forward, lambda t: m.forward_head(m.forward_features(t))):
        m.zero_grad()
        out = run(x)
        out.square().sum().backward()
        results.append((out.detach(), {k: p.grad.clone() for k, p in m.named_parameters()}))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
    for k, g in results[1][1].items():  # fp32 summation order differs between the two graphs
        torch.testing.assert_close(results[0][1][k], g, rtol=1e-4, atol=1e-6 * g.abs().max().item(), msg=k)


@pytest.mark.parametrize("size", [(16, 16), (12, 20)])
def test_patch_embedding_is_the_conv(size):
    """PatchEmbed computes its conv (kernel = stride = patch) as a matmul over flattened patches."""
    m = tiny(dynamic_img_size=True)
    x = torch.randn(2, 3, *size)
    tokens, grid = m.patch_embed(x)
    assert grid == (size[0] // 4, size[1] // 4)
    ref = m.patch_embed.proj(x).flatten(2).transpose(1, 2)
    torch.testing.assert_close(tokens, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pos_embed", ["learn", "learn2d"])
@pytest.mark.parametrize("size", [(24, 24), (16, 28)])
def test_dynamic_sizes_agree_with_set_input_size(pos_embed, size):
    m = tiny(dynamic_img_size=True, pos_embed=pos_embed).eval()
    torch.nn.init.normal_(m.head.weight)  # a zero head gives equal (zero) logits whatever the embeddings
    x = torch.randn(2, 3, *size)
    out = m(x)
    fixed = tiny(pos_embed=pos_embed).eval()
    fixed.load_state_dict(m.state_dict())
    fixed.set_input_size(size)
    torch.testing.assert_close(out, fixed(x))
    assert fixed.forward_intermediates(x).grid_size == (size[0] // 4, size[1] // 4)
    if pos_embed == "learn":
        assert fixed.pos_embed.shape == (1, 1 + (size[0] // 4) * (size[1] // 4), TINY["embed_dim"])


def test_set_input_size_keeps_the_class_entry_and_resamples_the_grid():
    m = tiny()
    cls_entry = m.pos_embed[:, :1].clone()
    m.set_input_size((20, 12))
    assert m.pos_embed.shape[1] == 1 + 5 * 3
    torch.testing.assert_close(m.pos_embed[:, :1], cls_entry)
    assert m(torch.randn(1, 3, 20, 12)).shape == (1, 5)


def _attention_by_hand(blk, x):
    """softmax(q k^T / sqrt(d)) from the block's own weights, computed independently of Attention."""
    h = blk.norm1(x)
    B, N, D = h.shape
    H = blk.attn.num_heads
    wq, wk, _ = blk.attn.qkv.weight.chunk(3)
    bq, bk, _ = blk.attn.qkv.bias.chunk(3)
    q = (h @ wq.T + bq).view(B, N, H, D // H).transpose(1, 2)
    k = (h @ wk.T + bk).view(B, N, H, D // H).transpose(1, 2)
    return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // H), dim=-1)


def test_forward_intermediates_attention_equals_what_sdpa_computes():
    m = tiny().eval()
    x = torch.randn(2, 3, 16, 16)
    plain = m.forward_intermediates(x)
    attn = m.forward_intermediates(x, return_attention=True)
    assert plain.attentions is None
    for a, b in zip(plain.tokens, attn.tokens):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(attn.features, m.forward_features(x), rtol=1e-5, atol=1e-6)
    block_in = m._pos_embed(*m.patch_embed(x))
    for i, blk in enumerate(m.blocks):
        a = attn.attentions[i]
        assert a.shape == (2, 2, 17, 17)
        torch.testing.assert_close(a, _attention_by_hand(blk, block_in), rtol=1e-5, atol=1e-6)
        block_in = attn.tokens[i]


def test_explicit_attention_path_equals_sdpa_in_gradients_too():
    m = tiny().train()
    torch.nn.init.normal_(m.head.weight)
    x = torch.randn(2, 3, 16, 16)
    grads = []
    for explicit in (False, True):
        m.zero_grad()
        out = m.forward_head(m.forward_intermediates(x, return_attention=explicit).features)
        out.square().sum().backward()
        grads.append((out.detach(), m.blocks[0].attn.qkv.weight.grad.clone()))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-5, atol=1e-5)
    scale = grads[1][1].abs().max().item()  # fp32 summation order differs between the kernels
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-4, atol=1e-5 * scale)


def test_attention_dropout_acts_only_in_training():
    m = tiny(attn_drop_rate=0.5)
    x = torch.randn(2, 3, 16, 16)
    torch.nn.init.normal_(m.head.weight)
    m.train()
    assert not torch.allclose(m(x), m(x))
    m.eval()
    torch.testing.assert_close(m(x), m(x))


def test_forward_intermediates_indices_and_norm():
    m = tiny(depth=3).eval()
    x = torch.randn(1, 3, 16, 16)
    full = m.forward_intermediates(x)
    assert len(full.tokens) == 3
    torch.testing.assert_close(m.norm(full.tokens[-1]), m.forward_features(x))
    last2 = m.forward_intermediates(x, indices=2)
    picked = m.forward_intermediates(x, indices=[0, -1], norm=True, return_attention=True)
    torch.testing.assert_close(last2.tokens[0], full.tokens[1])
    torch.testing.assert_close(picked.tokens[0], m.norm(full.tokens[0]))
    torch.testing.assert_close(picked.tokens[1], m.norm(full.tokens[2]))
    assert len(picked.attentions) == 2
    with pytest.raises(IndexError, match="out of range"):
        m.forward_intermediates(x, indices=[3])


def test_forward_head_pre_logits_returns_the_representation():
    m = tiny(representation_size=24).eval()
    feats = m.forward_features(torch.randn(2, 3, 16, 16))
    rep = m.forward_head(feats, pre_logits=True)
    assert rep.shape == (2, 24) and m.num_features == 24
    torch.testing.assert_close(rep, torch.tanh(m.pre_logits.fc(feats[:, 0])))
    torch.testing.assert_close(m.forward_head(feats), m.head(rep))
    plain = tiny().eval()
    feats = plain.forward_features(torch.randn(2, 3, 16, 16))
    torch.testing.assert_close(plain.forward_head(feats, pre_logits=True), feats[:, 0])


def test_gap_classifier_has_no_class_token_and_averages_patches():
    m = tiny(classifier="gap").eval()
    assert m.cls_token is None and "cls_token" not in m.state_dict()
    assert m.pos_embed.shape == (1, 16, TINY["embed_dim"])
    x = torch.randn(2, 3, 16, 16)
    feats = m.forward_features(x)
    assert feats.shape == (2, 16, TINY["embed_dim"])
    torch.testing.assert_close(m.forward_head(feats, pre_logits=True), feats.mean(1))


def test_position_embedding_kinds():
    x = torch.randn(2, 3, 16, 16)
    l2d = tiny(pos_embed="learn2d")
    keys = set(l2d.state_dict())
    assert {"pos_embed_row", "pos_embed_col"} <= keys and "pos_embed" not in keys
    assert l2d.pos_embed_row.shape == (1, 4, 16) and l2d.pos_embed_col.shape == (1, 4, 16)
    # row r, column c gets [row_r, col_c] (D/2 each, concatenated)
    tokens, grid = l2d.patch_embed(x)
    emb = l2d._pos_embed(tokens, grid)[:, 1:] - tokens
    torch.testing.assert_close(emb[0, 1 * 4 + 2], torch.cat([l2d.pos_embed_row[0, 1], l2d.pos_embed_col[0, 2]]))
    for kind in ("sincos", "none"):
        m = tiny(pos_embed=kind)
        assert not any("pos_embed" in k for k in m.state_dict())
        assert m(x).shape == (2, 5)
    none = tiny(pos_embed="none").eval()
    tokens, grid = none.patch_embed(x)
    torch.testing.assert_close(none._pos_embed(tokens, grid)[:, 1:], tokens)


def test_reset_classifier():
    m = tiny(representation_size=24)
    m.reset_classifier(3)
    assert m.head.out_features == 3 and m.head.in_features == 24 and m.cfg.num_classes == 3
    assert torch.count_nonzero(m.head.weight) == 0
    m.reset_classifier(4, drop_pre_logits=True)
    assert m.pre_logits is None and m.head.in_features == TINY["embed_dim"]
    assert m(torch.randn(1, 3, 16, 16)).shape == (1, 4)
    m.reset_classifier(0)
    assert m(torch.randn(1, 3, 16, 16)).shape == (1, TINY["embed_dim"])


def test_stochastic_depth_is_identity_in_eval_and_random_in_training():
    m = tiny(drop_path_rate=0.5, depth=2)
    ref = tiny(depth=2)
    ref.load_state_dict(m.state_dict())
    torch.nn.init.normal_(m.head.weight)
    ref.head.weight.data.copy_(m.head.weight)
    x = torch.randn(8, 3, 16, 16)
    m.eval(), ref.eval()
    torch.testing.assert_close(m(x), ref(x))
    assert m.blocks[0].drop_path.p == 0.0 and m.blocks[1].drop_path.p == 0.5  # linear rule
    m.train()
    assert not torch.allclose(m(x), ref(x))


@pytest.mark.parametrize("classifier", ["token", "gap"])
def test_patch_dropout_keeps_a_random_subset_of_patches_in_training_only(classifier):
    m = tiny(patch_drop_rate=0.5, classifier=classifier)
    x = torch.randn(4, 3, 16, 16)
    prefix = 1 if classifier == "token" else 0
    tokens = m.patch_embed(x)[0]
    seen = []
    m.blocks[0].register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    m.train()
    m(x)
    kept = seen[-1]
    n = tokens.shape[1]
    assert kept.shape[1] == prefix + round(n * 0.5)
    full = m._pos_embed(tokens, m.grid)
    if prefix:  # the class token survives, in front
        torch.testing.assert_close(kept[:, 0], full[:, 0])
    for b in range(4):  # every kept token is one of this image's own, with its position embedding
        d = torch.cdist(kept[b, prefix:], full[b, prefix:])
        assert torch.all(d.min(dim=1).values < 1e-5) and len(set(d.argmin(dim=1).tolist())) == kept.shape[1] - prefix
    m.eval()
    m(x)
    assert seen[-1].shape[1] == prefix + n


def test_bad_model_name_suggests_close_names():
    with pytest.raises(ValueError, match="did you mean vit_b16"):
        create_model("vit_b61")


@pytest.mark.parametrize(
    "kw, exc, msg",
    [
        (dict(nonsense=1), TypeError, "unknown model option"),
        (dict(classifier="cls"), ValueError, "classifier='cls'"),
        (dict(pos_embed="rope"), ValueError, "pos_embed='rope'"),
        (dict(num_heads=5), ValueError, "not divisible by num_heads"),
        (dict(img_size=30), ValueError, "not divisible by the patch size 16"),
        (dict(drop_rate=1.5), ValueError, "drop_rate"),
    ],
)
def test_bad_overrides_are_refused_clearly(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        with torch.device("meta"):
            create_model("vit_ti16", **kw)


def test_bad_input_shapes_are_refused_clearly():
    m = tiny()
    with pytest.raises(ValueError, match="3 channels"):
        m(torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError, match="set_input_size"):
        m(torch.randn(1, 3, 20, 20))
    with pytest.raises(ValueError, match="multiple of 4"):
        m.set_input_size(18)
    dyn = tiny(dynamic_img_size=True)
    with pytest.raises(ValueError, match="not divisible by the patch size 4"):
        dyn(torch.randn(1, 3, 16, 18))
