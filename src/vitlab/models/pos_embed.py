"""Position embeddings and their resampling to a new patch grid.

The paper (section 3.2) fine-tunes at a higher resolution than it pretrains at, which lengthens the
patch sequence; the learned 1-D embeddings are then "2-D interpolated according to their location in
the original image". Libraries disagree on *how*, and the results differ, so the method is named:

- ``official``: what Google's code does, ``scipy.ndimage.zoom(order=1)`` on the (h, w, D) grid. That
  zoom maps corner to corner, i.e. bilinear interpolation with ``align_corners=True``.
- ``bilinear`` / ``bicubic``: ``torch.nn.functional.interpolate`` with ``align_corners=False`` (timm's
  and Hugging Face's choice), optionally antialiased when shrinking. Hugging Face's DINOv2, SigLIP and
  CLIP ``interpolate_pos_encoding`` is ``bicubic``.
- ``bicubic_aa``: the antialiased bicubic filter in both directions (PIL's, a = -0.5, rather than
  a = -0.75), what timm's ``resample_abs_pos_embed`` does by default, for its dynamic image sizes too.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

RESAMPLE_METHODS = ("official", "bilinear", "bicubic", "bicubic_aa")

Grid = tuple[int, int]


def _check_method(method: str) -> None:
    if method not in RESAMPLE_METHODS:
        raise ValueError(f"unknown position-embedding resample method {method!r}; choose one of {RESAMPLE_METHODS}")


def resample_grid(grid: Tensor, new_size: Grid, method: str = "official", antialias: bool = False) -> Tensor:
    """Resample a (1, h, w, D) embedding grid to (1, h', w', D)."""
    _check_method(method)
    if tuple(grid.shape[1:3]) == tuple(new_size) and not torch.jit.is_tracing():  # a trace keeps sizes dynamic
        return grid
    dtype = grid.dtype
    x = grid.permute(0, 3, 1, 2).to(torch.promote_types(dtype, torch.float32))  # at least fp32, keep fp64
    if method == "official":
        x = F.interpolate(x, size=new_size, mode="bilinear", align_corners=True)
    elif method == "bicubic_aa" and torch.jit.is_tracing():  # ONNX has no antialiased bicubic operator
        x = torch.einsum("ih,jw,bdhw->bdij", _aa_bicubic_weights(x.shape[2], new_size[0], x),
                         _aa_bicubic_weights(x.shape[3], new_size[1], x), x)
    elif method == "bicubic_aa":
        x = F.interpolate(x, size=new_size, mode="bicubic", align_corners=False, antialias=True)
    else:
        x = F.interpolate(x, size=new_size, mode=method, align_corners=False, antialias=antialias)
    return x.permute(0, 2, 3, 1).to(dtype)


def _aa_bicubic_weights(n_in: int, n_out: int, like: Tensor) -> Tensor:
    """(n_out, n_in) matrix of the antialiased bicubic filter as torch (and PIL) build it: output i centred at
    scale * (i + 0.5), scale = n_in / n_out, Keys' cubic with a = -0.5 stretched by max(scale, 1), each row
    normalised. Tensor arithmetic only, so that a trace keeps both sizes dynamic; equal to the interpolate
    kernel up to rounding."""
    i = torch.arange(n_out, dtype=like.dtype, device=like.device)
    j = torch.arange(n_in, dtype=like.dtype, device=like.device)
    scale = n_in / (i[-1:] + 1)  # n_in / n_out as a tensor
    x = ((j[None] + 0.5 - scale * (i[:, None] + 0.5)) / scale.clamp(min=1.0)).abs()
    a = -0.5
    w = torch.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                    torch.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, torch.zeros_like(x)))
    return w / w.sum(1, keepdim=True)


def resample_pos_embed(
    pos_embed: Tensor,
    new_size: Grid,
    old_size: Grid | None = None,
    num_prefix_tokens: int = 1,
    method: str = "official",
    antialias: bool = False,
) -> Tensor:
    """Resample learned 1-D position embeddings (1, prefix + h*w, D) to a new (h', w') grid.

    The prefix entries (the class token's) are kept as they are; only the patch grid is interpolated.
    ``old_size`` defaults to a square grid; pass it for non-square ones.
    """
    if pos_embed.ndim != 3 or pos_embed.shape[0] != 1:
        raise ValueError(f"position embedding must have shape (1, tokens, dim), got {tuple(pos_embed.shape)}")
    n = pos_embed.shape[1] - num_prefix_tokens
    if old_size is None:
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(
                f"position embedding has {n} patch entries, not a square grid; pass old_size=(h, w) explicitly"
            )
        old_size = (side, side)
    if old_size[0] * old_size[1] != n:
        raise ValueError(f"position embedding has {n} patch entries but old_size={old_size} needs {old_size[0] * old_size[1]}")
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    grid = grid.reshape(1, old_size[0], old_size[1], -1)
    grid = resample_grid(grid, new_size, method=method, antialias=antialias)
    return torch.cat([prefix, grid.reshape(1, new_size[0] * new_size[1], -1)], dim=1)


def resample_axis(embed: Tensor, new_len: int, method: str = "official", antialias: bool = False) -> Tensor:
    """Resample one axis of a learned 2-D embedding, shape (1, L, d) -> (1, L', d)."""
    grid = embed.unsqueeze(2)  # (1, L, 1, d): an image one column wide
    return resample_grid(grid, (new_len, 1), method=method, antialias=antialias).squeeze(2)


def sincos_2d(grid_size: Grid, dim: int, temperature: float = 10000.0) -> Tensor:
    """Fixed 2-D sine-cosine embedding (1, h*w, dim) as big_vision's ``posemb_sincos_2d``.

    A quarter of the channels each for sin(x), cos(x), sin(y), cos(y); frequencies run from 1 to
    1/temperature inclusive.
    """
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs embed_dim divisible by 4, got {dim}")
    h, w = grid_size
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float64) / max(quarter - 1, 1))
    y = ys.reshape(-1, 1) * omega
    x = xs.reshape(-1, 1) * omega
    return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1).float().unsqueeze(0)
