"""Attention rollout and mean attention distance on hand-built attention with known answers."""
import math

import numpy as np
import pytest
import torch

import vitlab
from vitlab.analysis import attention_rollout, collect_attention, mean_attention_distance, rollout_matrix

GRID = (2, 3)  # non-square on purpose
N = GRID[0] * GRID[1]


def _identity(layers: int, b: int, heads: int, t: int) -> list[torch.Tensor]:
    return [torch.eye(t).expand(b, heads, t, t).clone() for _ in range(layers)]


def test_uniform_attention_rolls_out_to_a_uniform_map():
    L, T = 3, 1 + N
    attn = [torch.full((2, 4, T, T), 1.0 / T) for _ in range(L)]
    m = attention_rollout(attn, num_prefix_tokens=1, grid_size=GRID)
    # ((W + I) / 2)^L with W = J/T idempotent is (I + (2^L - 1) W) / 2^L: off-diagonal entries (1 - 2^-L) / T
    assert m.shape == (2, *GRID)
    np.testing.assert_allclose(m, (1 - 2.0**-L) / T, rtol=1e-6)  # inputs are float32
    # gap model (no class token): the mean of the patch rows, also uniform: 1/(N 2^L) + (1 - 2^-L)/N
    attn_gap = [torch.full((1, 2, N, N), 1.0 / N) for _ in range(L)]
    g = attention_rollout(attn_gap, num_prefix_tokens=0, grid_size=GRID)
    np.testing.assert_allclose(g, 1 / (N * 2**L) + (1 - 2.0**-L) / N, rtol=1e-6)


def test_identity_attention_keeps_everything_on_the_class_token():
    T = 1 + N
    attn = _identity(4, 2, 3, T)
    r = rollout_matrix(attn)
    # each token only mixes with itself, so the class token's row is e_0: all its mass on itself ...
    np.testing.assert_array_equal(r[:, 0], np.tile(np.eye(T)[0], (2, 1)))
    # ... and none of it on any patch: the map the classifier sees is exactly zero
    np.testing.assert_array_equal(attention_rollout(attn, 1, GRID), np.zeros((2, *GRID)))
    # gap: each patch row is e_i, so the pooled row gives every patch 1/N
    np.testing.assert_allclose(attention_rollout(_identity(2, 1, 1, N), 0, GRID), np.full((1, *GRID), 1 / N))


def test_rollout_follows_information_through_the_layers_in_order():
    """Layer 1: patch j reads patch k; layer 2: the class token reads patch j; so k reaches it too."""
    T, j, k = 1 + N, 2, 5  # token indices (patches start at 1)
    a1 = torch.eye(T)
    a1[j] = 0
    a1[j, k] = 1
    a2 = torch.eye(T)
    a2[0] = 0
    a2[0, j] = 1
    m = attention_rollout([a1[None, None], a2[None, None]], 1, GRID)[0].ravel()
    expected = np.zeros(N)
    expected[j - 1] = expected[k - 1] = 0.25  # 1/2 (residual) x 1/2, the rest (1/2) stays on the class token
    np.testing.assert_allclose(m, expected)


def test_discard_and_head_fusion():
    T = 4
    w = torch.tensor([[0.7, 0.2, 0.09, 0.01]] * T)[None, None]
    r = rollout_matrix([w], discard_ratio=0.25)[0]  # one entry per row dropped: the weakest off-diagonal
    assert r[0, 3] == 0 and r[1, 3] == 0 and r[3, 2] == 0 and r[3, 3] > 0  # the diagonal is never dropped
    np.testing.assert_allclose(r.sum(-1), 1.0)
    two = torch.stack([torch.eye(T), torch.full((T, T), 1.0 / T)])[None]  # heads: identity, uniform
    r_max = rollout_matrix([two], head_fusion="max")[0]
    np.testing.assert_allclose(r_max, (np.maximum(np.eye(T), 1 / T) + np.eye(T)) / (1 + 1 + (T - 1) / T))
    with pytest.raises(ValueError, match="head_fusion"):
        rollout_matrix([two], head_fusion="median")
    with pytest.raises(ValueError, match="num_prefix_tokens"):
        attention_rollout([two], 1, GRID)


def test_attention_distance_equals_the_formula():
    T, P = 1 + N, 4
    a = torch.zeros(2, 3, T, T, dtype=torch.float64)  # layers x heads built by hand, one image
    a[0, 0] = torch.eye(T)  # layer 1 head 1: every query attends to itself -> 0 px
    a[0, 1, :, 1] = 1.0  # head 2: every query attends to patch (0, 0)
    a[0, 2, :, 0] = 0.5  # head 3: half to the class token (distance 0), half to patch (0, 0)
    a[0, 2, :, 1] += 0.5
    a[1] = 1.0 / T  # layer 2: uniform over all tokens
    d = mean_attention_distance(list(a[:, None]), GRID, P, num_prefix_tokens=1)
    centres = [(P * (r + 0.5), P * (c + 0.5)) for r in range(GRID[0]) for c in range(GRID[1])]
    to_first = np.mean([math.dist(q, centres[0]) for q in centres])
    all_pairs = np.mean([[math.dist(q, k) for k in centres] for q in centres]) * N / T
    assert d.shape == (2, 3)
    np.testing.assert_allclose(d[0], [0.0, to_first, to_first / 2], rtol=1e-12)
    np.testing.assert_allclose(d[1], all_pairs, rtol=1e-12)
    assert to_first == pytest.approx(P * (0 + 1 + 2 + 1 + math.sqrt(2) + math.sqrt(5)) / 6)
    # rectangular tokens (e.g. a hybrid's feature cells) and the average over images
    b = torch.zeros(2, 1, N, N)
    b[0, 0, :, 0] = 1.0
    b[1, 0] = torch.eye(N)
    d2 = mean_attention_distance([b], GRID, (4, 8), num_prefix_tokens=0)
    rect = np.mean([math.hypot(4 * r, 8 * c) for r in range(2) for c in range(3)])
    np.testing.assert_allclose(d2, [[rect / 2]], rtol=1e-12)


@pytest.mark.parametrize("classifier,img_size", [("token", (8, 12)), ("gap", (8, 12)), ("token", (64, 72))])
def test_on_a_real_model_the_attention_pass_agrees_with_the_ordinary_forward(classifier, img_size):
    """(64, 72): 289 tokens, long enough for the ordinary forward to take the fused SDPA kernel."""
    cfg = vitlab.ViTConfig(img_size=img_size, patch_size=4, num_classes=3, embed_dim=32, depth=2, num_heads=2,
                           mlp_dim=64, classifier=classifier)
    model = vitlab.VisionTransformer(cfg).eval()
    torch.nn.init.normal_(model.head.weight)
    x = torch.randn(2, 3, *img_size)
    logits, attns, grid = collect_attention(model, x)
    with torch.no_grad():
        torch.testing.assert_close(logits, model(x), rtol=1e-5, atol=1e-5)
    assert grid == (img_size[0] // 4, img_size[1] // 4) and len(attns) == 2
    m = attention_rollout(attns, model.num_prefix_tokens, grid)
    assert m.shape == (2, *grid) and (m > 0).all()
    # token: the class row's patch share is below 1 (the rest stays on the class token); gap: exactly 1
    np.testing.assert_array_less(m.sum((1, 2)), 1.0 + 1e-9)
    if classifier == "gap":
        np.testing.assert_allclose(m.sum((1, 2)), 1.0)
    assert mean_attention_distance(attns, grid, 4, model.num_prefix_tokens).shape == (2, 2)
