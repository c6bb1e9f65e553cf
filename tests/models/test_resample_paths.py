"""Every path that resamples position embeddings uses the method it was asked for, checked against an
independent reference (scipy's zoom for "official", F.interpolate for the others) through logits of a
non-zero head, and gradient checkpointing really recomputes the blocks."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import zoom

import vitlab
from vitlab.models.pos_embed import resample_pos_embed
from vitlab.weights import export

TINY = dict(img_size=16, patch_size=4, in_chans=3, num_classes=5, embed_dim=32, depth=2, num_heads=2, mlp_dim=64)


def tiny(**kw) -> vitlab.VisionTransformer:
    m = vitlab.VisionTransformer(vitlab.ViTConfig(**{**TINY, **kw}))
    torch.nn.init.normal_(m.head.weight)  # the zero-initialised head would make every logit equal
    torch.nn.init.normal_(m.head.bias)
    return m


def reference_grid(grid: np.ndarray, new: tuple[int, int], method: str) -> np.ndarray:
    """(h, w, D) -> (h', w', D), independently of vitlab: scipy for the official method, else F.interpolate."""
    if method == "official":
        return zoom(grid, (new[0] / grid.shape[0], new[1] / grid.shape[1], 1), order=1)
    x = torch.from_numpy(grid).permute(2, 0, 1)[None]
    return F.interpolate(x, size=new, mode=method, align_corners=False)[0].permute(1, 2, 0).numpy()


def reference_pos_embed(pos: torch.Tensor, old: tuple[int, int], new: tuple[int, int], method: str) -> torch.Tensor:
    grid = pos[0, 1:].detach().double().reshape(*old, -1).numpy()
    out = torch.from_numpy(reference_grid(grid, new, method)).reshape(1, new[0] * new[1], -1)
    return torch.cat([pos[:, :1].detach().double(), out], dim=1).float()


def reference_axis(emb: torch.Tensor, new_len: int, method: str) -> torch.Tensor:
    grid = emb[0].detach().double().numpy()[:, None, :]  # (L, 1, d)
    return torch.from_numpy(reference_grid(grid, (new_len, 1), method)[:, 0]).float()[None]


def reference_forward(m: vitlab.VisionTransformer, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Logits with the position embedding ``pos`` (1, tokens, D) added by hand: patches, class token, blocks,
    norm, head, without the model's own position-embedding code."""
    t = m.patch_embed.proj(x).flatten(2).transpose(1, 2)
    t = torch.cat([m.cls_token.expand(len(x), -1, -1), t], dim=1) + pos
    for blk in m.blocks:
        t = blk(t)[0]
    return m.head(m.norm(t)[:, 0])


@pytest.mark.parametrize("method", ["official", "bilinear", "bicubic"])
@pytest.mark.parametrize("size", [(16, 16), (24, 24), (12, 28)])
def test_dynamic_size_forward_adds_reference_resampled_embeddings(method, size):
    dyn = tiny(dynamic_img_size=True, pos_resample=method).eval()
    new = (size[0] // 4, size[1] // 4)
    x = torch.randn(3, 3, *size)
    out = dyn(x)
    assert out.std() > 0.1  # the logits carry information, not zeros
    want = reference_forward(dyn, x, reference_pos_embed(dyn.pos_embed, (4, 4), new, method))
    torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-4)
    unpositioned = reference_forward(dyn, x, torch.zeros_like(want[:1, :1]))
    assert (out - unpositioned).abs().max() > 1e-2  # the embeddings change the logits: the check has teeth


@pytest.mark.parametrize("method", ["official", "bicubic"])
def test_dynamic_size_learn2d_resamples_each_axis_with_the_configured_method(method):
    dyn = tiny(dynamic_img_size=True, pos_embed="learn2d", pos_resample=method).eval()
    rows = reference_axis(dyn.pos_embed_row, 6, method)  # (1, 6, D/2)
    cols = reference_axis(dyn.pos_embed_col, 3, method)  # (1, 3, D/2)
    grid = torch.cat([rows[:, :, None].expand(-1, 6, 3, -1), cols[:, None].expand(-1, 6, 3, -1)], dim=-1)
    pos = torch.cat([torch.zeros(1, 1, 32), grid.reshape(1, 18, 32)], dim=1)  # the class token gets no position
    x = torch.randn(2, 3, 24, 12)
    torch.testing.assert_close(dyn(x), reference_forward(dyn, x, pos), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", ["official", "bilinear", "bicubic"])
def test_set_input_size_uses_the_method_it_is_given(method):
    other = "bilinear" if method == "official" else "official"  # the model's default must not be used
    m = tiny(pos_resample=other)
    before = m.pos_embed.detach().clone()
    m.set_input_size((28, 20), method=method)
    torch.testing.assert_close(m.pos_embed.detach(), resample_pos_embed(before, (7, 5), (4, 4), 1, method=method))
    torch.testing.assert_close(m.pos_embed.detach(), reference_pos_embed(before, (4, 4), (7, 5), method),
                               rtol=1e-5, atol=1e-5)
    m2d = tiny(pos_embed="learn2d", pos_resample=other)
    row = m2d.pos_embed_row.detach().clone()
    m2d.set_input_size((28, 20), method=method)
    torch.testing.assert_close(m2d.pos_embed_row.detach(), reference_axis(row, 7, method), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["official", "bilinear", "bicubic"])
def test_loading_weights_of_another_resolution_resamples_with_the_models_method(tmp_path, method):
    src = tiny()
    src.save_pretrained(tmp_path / "src")
    want = reference_pos_embed(src.pos_embed, (4, 4), (6, 6), method)
    m = tiny(img_size=24, pos_resample=method)
    report = vitlab.load_weights(m, tmp_path / "src")
    torch.testing.assert_close(m.pos_embed.detach(), want, rtol=1e-5, atol=1e-5)
    assert any(method in n for n in report["notes"])
    loaded = vitlab.load_model(tmp_path / "src", img_size=24, pos_resample=method)
    torch.testing.assert_close(loaded.pos_embed.detach(), want, rtol=1e-5, atol=1e-5)


def test_official_npz_is_resampled_with_the_official_method_whatever_the_model_says(tmp_path):
    src = tiny()
    export(src, tmp_path / "w.npz", "npz")
    m = tiny(img_size=24, pos_resample="bicubic")
    vitlab.load_weights(m, tmp_path / "w.npz")
    torch.testing.assert_close(m.pos_embed.detach(), reference_pos_embed(src.pos_embed, (4, 4), (6, 6), "official"),
                               rtol=1e-5, atol=1e-5)


def test_grad_checkpointing_recomputes_every_block_in_backward_only():
    m = tiny()
    calls = []
    for i, blk in enumerate(m.blocks):
        blk.register_forward_pre_hook(lambda mod, args, i=i: calls.append(i))
    x = torch.randn(2, 3, 16, 16)
    m(x).sum().backward()
    assert calls == [0, 1]  # plain: each block runs once
    calls.clear()
    m.set_grad_checkpointing(True)
    out = m(x)
    assert calls == [0, 1]
    out.sum().backward()
    assert sorted(calls) == [0, 0, 1, 1]  # the backward pass ran each block's forward again
    calls.clear()
    with torch.no_grad():  # nothing to recompute without autograd
        m(x)
    assert calls == [0, 1]
    m.set_grad_checkpointing(False)
    calls.clear()
    m(x).sum().backward()
    assert calls == [0, 1]
