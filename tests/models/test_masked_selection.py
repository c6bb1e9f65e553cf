"""Masked patch prediction as REFERENCE.md section 7 describes it: of the selected half of the patches,
80% become the [mask] embedding, 10% a random *other* patch's embedding (not noise), 10% stay; the
loss is taken on exactly the selected patches, against their 3-bit mean colour."""
import numpy as np
import torch

import vitlab
from vitlab.models.masked import MaskedPatchPredictor


def tiny_predictor() -> MaskedPatchPredictor:
    model = vitlab.create_model("vit_ti16", img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, mlp_dim=64)
    return MaskedPatchPredictor(model).eval()


def reference_targets(images: torch.Tensor, p: int) -> np.ndarray:
    """Per patch: mean colour per channel of a [-1, 1] image, 8 levels each, class r + 8 g + 64 b."""
    x = images.double().numpy()
    b, c, h, w = x.shape
    means = x.reshape(b, c, h // p, p, w // p, p).mean(axis=(3, 5)).reshape(b, c, -1)  # (B, C, N)
    levels = np.clip(np.floor((means + 1.0) / 2.0 * 8), 0, 7).astype(int)
    return (levels * (8 ** np.arange(c))[None, :, None]).sum(axis=1)  # (B, N)


def test_random_replacements_are_other_patches_of_the_batch():
    mp = tiny_predictor()
    tokens = torch.randn(32, 16, 32)
    out, mask = mp.corrupt(tokens, torch.Generator().manual_seed(1))  # 1/512 per draw to hit itself, if allowed
    is_mask = (out == mp.mask_token.detach()).all(-1)
    same = (out == tokens).all(-1)
    replaced = mask & ~is_mask & ~same
    assert 0.06 < replaced[mask].float().mean().item() < 0.14  # ~10% of the selected patches
    pool = tokens.reshape(-1, 32)
    for b, n in replaced.nonzero().tolist():
        hits = (pool == out[b, n]).all(-1).nonzero().flatten().tolist()
        assert hits and b * 16 + n not in hits, (b, n)  # a copy of another patch embedding, not noise


def test_loss_is_taken_on_the_selected_patches_with_mean_colour_targets():
    mp = tiny_predictor()
    model = mp.model
    seen = {}
    model.patch_embed.register_forward_hook(lambda m, a, out: seen.__setitem__("clean", out[0].detach()))
    model.blocks[0].register_forward_pre_hook(lambda m, a: seen.__setitem__("block_in", a[0].detach()))
    model.norm.register_forward_hook(lambda m, a, out: seen.__setitem__("normed", out.detach()))
    mp.head.register_forward_hook(lambda m, a, out: seen.__setitem__("head_in", a[0].detach()))
    images = torch.rand(6, 3, 16, 16) * 2 - 1
    out = mp(images, torch.Generator().manual_seed(2))
    assert (out.mask.sum(1) == 8).all()  # half of the 16 patches of each image
    corrupted = ((seen["block_in"][:, 1:] - model.pos_embed[:, 1:].detach()) - seen["clean"]).abs().amax(-1) > 1e-5
    assert corrupted.sum() >= 0.8 * out.mask.sum()  # most selected patches were visibly changed ...
    assert not (corrupted & ~out.mask).any()  # ... and nothing outside the selection was
    torch.testing.assert_close(seen["head_in"], seen["normed"][:, 1:][out.mask])  # predictions from those tokens
    assert out.targets.tolist() == reference_targets(images, 4)[out.mask.numpy()].tolist()
    assert out.logits.shape == (int(out.mask.sum()), 512)


def test_other_patch_is_never_the_patch_itself_even_in_a_tiny_batch():
    """With 4 patches in the batch a donor drawn from all of them would be the patch itself 1 time in 4,
    turning 10% 'random' into 7.5% random + 12.5% unchanged."""
    mp = tiny_predictor()
    g = torch.Generator().manual_seed(3)
    counts = torch.zeros(3)
    for _ in range(4000):
        tokens = torch.randn(2, 2, 32)
        out, mask = mp.corrupt(tokens, g)
        is_mask = (out == mp.mask_token.detach()).all(-1)
        same = (out == tokens).all(-1)
        counts += torch.stack([(is_mask & mask).sum(), (same & mask).sum(), (mask & ~is_mask & ~same).sum()])
    frac = (counts / counts.sum()).tolist()  # 8000 selected patches: a std of ~0.3 points per share
    assert abs(frac[0] - 0.8) < 0.02 and abs(frac[1] - 0.1) < 0.015 and abs(frac[2] - 0.1) < 0.015, frac
