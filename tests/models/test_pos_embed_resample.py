"""Position-embedding resampling: the official method is scipy's zoom(order=1); the others follow F.interpolate."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from vitlab.models.pos_embed import resample_axis, resample_pos_embed, sincos_2d


@pytest.mark.parametrize("old, new", [((7, 7), (12, 12)), ((3, 5), (7, 4)), ((6, 6), (4, 4))])
def test_official_equals_scipy_zoom_order_1_and_keeps_the_class_entry(old, new):
    D = 6
    pos = torch.randn(1, 1 + old[0] * old[1], D, dtype=torch.float64)
    out = resample_pos_embed(pos, new, old, num_prefix_tokens=1, method="official")
    grid = pos[0, 1:].numpy().reshape(old[0], old[1], D)
    zoom = (new[0] / old[0], new[1] / old[1], 1)
    want = ndimage.zoom(grid, zoom, order=1, grid_mode=False)
    assert want.shape == (new[0], new[1], D)
    np.testing.assert_allclose(out[0, 1:].numpy().reshape(new[0], new[1], D), want, atol=1e-10)
    torch.testing.assert_close(out[:, :1], pos[:, :1])


def test_bilinear_uses_half_pixel_centres():
    # Upsampling [a, b] x2 with align_corners=False gives [a, .75a+.25b, .25a+.75b, b].
    a, b = 1.0, 5.0
    emb = torch.tensor([[[a], [b]]])  # (1, L=2, d=1)
    out = resample_axis(emb, 4, method="bilinear")[0, :, 0]
    torch.testing.assert_close(out, torch.tensor([a, 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b, b]))
    official = resample_axis(emb, 4, method="official")[0, :, 0]  # corner-aligned: a, a+(b-a)/3, ...
    torch.testing.assert_close(official, torch.tensor([a, a + (b - a) / 3, a + 2 * (b - a) / 3, b]))


@pytest.mark.parametrize("method, antialias", [("bilinear", False), ("bicubic", False), ("bicubic", True)])
def test_bilinear_and_bicubic_follow_interpolate_on_non_square_grids(method, antialias):
    pos = torch.randn(1, 1 + 4 * 6, 8)
    out = resample_pos_embed(pos, (3, 5), (4, 6), method=method, antialias=antialias)
    img = pos[:, 1:].reshape(1, 4, 6, 8).permute(0, 3, 1, 2)
    want = F.interpolate(img, size=(3, 5), mode=method, align_corners=False, antialias=antialias)
    torch.testing.assert_close(out[:, 1:], want.permute(0, 2, 3, 1).reshape(1, 15, 8))
    torch.testing.assert_close(out[:, :1], pos[:, :1])


def test_same_size_is_unchanged_and_bad_arguments_are_refused():
    pos = torch.randn(1, 17, 4)
    torch.testing.assert_close(resample_pos_embed(pos, (4, 4)), pos)
    with pytest.raises(ValueError, match="choose one of"):
        resample_pos_embed(pos, (5, 5), method="nearest")
    with pytest.raises(ValueError, match="not a square grid"):
        resample_pos_embed(torch.randn(1, 1 + 12, 4), (4, 4))
    with pytest.raises(ValueError, match="old_size"):
        resample_pos_embed(pos, (5, 5), old_size=(3, 4))


def test_sincos_matches_big_vision():
    h, w, dim = 3, 5, 16
    # big_vision posemb_sincos_2d, written out with numpy
    y, x = np.mgrid[:h, :w]
    omega = 1.0 / 10000.0 ** (np.arange(dim // 4) / (dim // 4 - 1))
    yo, xo = np.outer(y.ravel(), omega), np.outer(x.ravel(), omega)
    want = np.concatenate([np.sin(xo), np.cos(xo), np.sin(yo), np.cos(yo)], axis=1)[None]
    np.testing.assert_allclose(sincos_2d((h, w), dim).numpy(), want, atol=1e-6)
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d((2, 2), 6)
