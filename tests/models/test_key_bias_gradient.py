"""The key bias: its exact gradient is zero (softmax ignores a constant added to all of a query's scores), so
the model gives it exactly zero instead of the rounding noise backward computes, without changing any forward
value or any other gradient. Two runs that sum in different orders (process counts, CPUs) then agree."""
import copy

import pytest
import torch

from vitlab.models.registry import get_config
from vitlab.models.vit import Attention, VisionTransformer


def _pair() -> tuple[Attention, Attention]:
    """The model's attention and a copy whose fused bias keeps the key part's computed gradient."""
    torch.manual_seed(0)
    attn = Attention(32, 4)
    torch.nn.init.normal_(attn.qkv.bias)
    plain = copy.deepcopy(attn)
    plain.qkv_bias = lambda: plain.qkv.bias
    return attn, plain


@pytest.mark.parametrize("num_queries", [None, 1])  # the whole sequence, and the class-token-only last block
def test_forward_and_other_gradients_unchanged_key_bias_gradient_zero(num_queries):
    attn, plain = _pair()
    x = torch.randn(3, 9, 32)
    grads = []
    for m in (attn, plain):
        xi = x.clone().requires_grad_(True)
        out, _ = m(xi, num_queries=num_queries)
        out.pow(2).sum().backward()
        grads.append((out.detach(), xi.grad, m.qkv.weight.grad, m.qkv.bias.grad, m.proj.weight.grad))
    (out, gx, gw, gb, gp), (out0, gx0, gw0, gb0, gp0) = grads
    assert torch.equal(out, out0) and torch.equal(gx, gx0) and torch.equal(gw, gw0) and torch.equal(gp, gp0)
    q, k, v = gb.chunk(3)
    q0, k0, v0 = gb0.chunk(3)
    assert torch.equal(q, q0) and torch.equal(v, v0) and q.abs().max() > 1e-3
    assert not k.any()  # exactly zero
    assert k0.abs().max() < 1e-4 * q0.abs().max()  # what it replaces: noise, not signal


def test_training_leaves_the_key_bias_where_it_started():
    torch.manual_seed(0)
    model = VisionTransformer(get_config("vit_mnist", img_size=8, patch_size=2, in_chans=1, embed_dim=32, depth=2,
                                         num_heads=2, mlp_dim=64, num_classes=10))
    for blk in model.blocks:
        torch.nn.init.normal_(blk.attn.qkv.bias, std=0.1)  # a loaded checkpoint's biases
    torch.nn.init.normal_(model.head.weight, std=0.1)
    before = [blk.attn.qkv.bias.detach().clone() for blk in model.blocks]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for step in range(3):
        x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()
    for b0, blk in zip(before, model.blocks):
        (q0, k0, v0), (q, k, v) = b0.chunk(3), blk.attn.qkv.bias.detach().chunk(3)
        assert torch.equal(k, k0) and not torch.equal(q, q0) and not torch.equal(v, v0)
    with torch.no_grad():  # inference reads the parameter itself (no concatenation)
        assert model.blocks[0].attn.qkv_bias() is model.blocks[0].attn.qkv.bias
