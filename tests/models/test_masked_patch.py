import pytest
import torch

import vitlab
from vitlab.models.masked import MaskedPatchPredictor, mean_colour_targets


def _tiny(**kw):
    return vitlab.create_model("vit_ti16", img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, mlp_dim=64, **kw)


def test_mean_colour_targets_known_values():
    img = torch.full((1, 3, 8, 8), -1.0)  # black everywhere -> class 0
    img[:, 0, :4, :4] = 1.0  # top-left patch: red saturated -> level 7 in channel 0
    img[:, 2, 4:, 4:] = 0.0  # bottom-right patch: blue mid-grey -> level 4 in channel 2
    t = mean_colour_targets(img, 4)
    assert t.tolist() == [[7, 0, 0, 4 * 64]]


def test_corruption_proportions():
    mp = MaskedPatchPredictor(_tiny())
    tokens = torch.randn(64, 16, 32)
    g = torch.Generator().manual_seed(0)
    out, mask = mp.corrupt(tokens, g)
    assert (mask.sum(1) == 8).all()  # exactly half of each image's 16 patches
    is_mask = (out == mp.mask_token.detach()).all(-1)
    unchanged = (out == tokens).all(-1)
    assert not (is_mask & ~mask).any()
    frac_mask = is_mask[mask].float().mean().item()
    frac_same = unchanged[mask].float().mean().item()
    assert 0.74 < frac_mask < 0.86 and 0.05 < frac_same < 0.16
    assert (out[~mask] == tokens[~mask]).all()  # untouched positions really untouched


def test_loss_trains_and_reaches_all_parameters():
    mp = MaskedPatchPredictor(_tiny())
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    out = mp(x, torch.Generator().manual_seed(0))
    assert out.logits.shape == (32, 512) and out.targets.shape == (32,)
    out.loss().backward()
    unused = [n for n, p in mp.named_parameters() if p.grad is None and not n.startswith("model.head")]
    assert unused == []


def test_rejects_hybrid_and_bad_ratios():
    with pytest.raises(ValueError, match="mask_prob"):
        MaskedPatchPredictor(_tiny(), mask_prob=0.9, random_prob=0.2)
