"""The attention implementations (SDPA, explicit matmul + softmax) compute the same function."""
import pytest
import torch

from vitlab.models.registry import get_config
from vitlab.models.vit import EXPLICIT_ATTN_MAX_TOKENS, Attention, VisionTransformer


def _tiny(patch: int) -> VisionTransformer:
    torch.manual_seed(0)
    cfg = get_config("vit_mnist", img_size=28, in_chans=1, patch_size=patch, embed_dim=32, depth=2, num_heads=4,
                     mlp_dim=64, num_classes=10, act="gelu")
    model = VisionTransformer(cfg)
    torch.nn.init.normal_(model.head.weight, std=0.1)  # a zero head would hide differences in the logits
    return model


def _set_impl(model: VisionTransformer, impl: str) -> None:
    for blk in model.blocks:
        blk.attn.impl = impl


@pytest.mark.parametrize("patch", [7, 4])  # 17 tokens (explicit by rule on the CPU) and 50 (SDPA)
def test_sdpa_and_explicit_agree_forward_and_backward(patch):
    model = _tiny(patch)
    x = torch.randn(3, 1, 28, 28)
    results = {}
    for impl in ("sdpa", "explicit", "auto"):
        _set_impl(model, impl)
        model.zero_grad()
        out = model(x)
        out.square().sum().backward()
        results[impl] = (out.detach(), model.blocks[0].attn.qkv.weight.grad.clone())
    for impl in ("explicit", "auto"):
        torch.testing.assert_close(results[impl][0], results["sdpa"][0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(results[impl][1], results["sdpa"][1], rtol=1e-4, atol=1e-5)


def test_auto_rule_and_attention_maps():
    attn = Attention(32, 4)
    assert attn._explicit(EXPLICIT_ATTN_MAX_TOKENS, torch.device("cpu"))
    assert not attn._explicit(EXPLICIT_ATTN_MAX_TOKENS + 1, torch.device("cpu"))
    assert not attn._explicit(17, torch.device("cuda"))
    model = _tiny(4).eval()
    _set_impl(model, "sdpa")  # maps are still returned when the fast path is SDPA
    x = torch.randn(2, 1, 28, 28)
    inter = model.forward_intermediates(x, return_attention=True)
    assert inter.attentions[0].shape == (2, 4, 50, 50)
    torch.testing.assert_close(inter.attentions[0].sum(-1), torch.ones(2, 4, 50))
    torch.testing.assert_close(inter.features, model.forward_features(x))


def test_unknown_impl_is_named():
    model = _tiny(7)
    _set_impl(model, "flash")
    with pytest.raises(ValueError, match="flash"):
        model(torch.randn(1, 1, 28, 28))
