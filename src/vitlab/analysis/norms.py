"""Token feature norms, the analysis of "Vision Transformers Need Registers" (Darcet et al. 2023, Fig. 3-4).

Large ViTs trained long enough repurpose a few low-information background patches as global scratch
space: those tokens leave the last block with norms several times the others' (a second mode of the
norm histogram, about 2% of the tokens in DINOv2 ViT-L), and their attention maps show the artifacts.
Register tokens give the model that space explicitly, and the outliers vanish from the patches. Norms
are taken at the last block's output before the final LayerNorm, which would equalise them.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

Grid = tuple[int, int]
# A patch token is "high-norm" above this multiple of the median patch norm. The paper reads its cut (150 for
# DINOv2 ViT-L, whose ordinary tokens lie below ~50-100) off the bimodal histogram; a multiple of the median
# states the same cut without a model-specific constant.
HIGH_NORM_FACTOR = 3.0


def token_norms(tokens: Tensor, num_prefix_tokens: int, grid_size: Grid) -> tuple[np.ndarray, np.ndarray]:
    """(B, prefix + gh*gw, D) tokens -> L2 norms of the patch tokens (B, gh, gw) and of the prefix
    (class and register) tokens (B, prefix)."""
    gh, gw = grid_size
    if tokens.ndim != 3 or tokens.shape[1] != num_prefix_tokens + gh * gw:
        raise ValueError(f"tokens of shape {tuple(tokens.shape)} are not (B, {num_prefix_tokens} + {gh}*{gw}, D)")
    n = tokens.detach().float().norm(dim=-1).cpu().numpy()
    return n[:, num_prefix_tokens:].reshape(len(n), gh, gw), n[:, :num_prefix_tokens]


def high_norm_share(patch_norms: np.ndarray, factor: float = HIGH_NORM_FACTOR) -> tuple[float, float]:
    """(threshold, share): the cut ``factor`` x the median patch norm, and the share of patch tokens above it."""
    if factor <= 1.0:
        raise ValueError(f"factor must be > 1 (a multiple of the median norm), got {factor}")
    norms = np.asarray(patch_norms, dtype=np.float64).ravel()
    if not norms.size:
        raise ValueError("no patch norms given")
    threshold = factor * float(np.median(norms))
    return threshold, float((norms > threshold).mean())
