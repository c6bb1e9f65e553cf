"""What the attention does: attention rollout (Abnar & Zuidema, 2020) and mean attention distance
(paper section 4.5, Fig. 6 and Fig. 7 right).

Both take the per-block attention probabilities that ``model.forward_intermediates(x,
return_attention=True).attentions`` returns: a list (one per block) of (B, heads, T, T) tensors or
arrays, T = num_prefix_tokens + gh * gw, patch tokens in row-major order. ``collect_attention`` runs
that pass for you; ordinary forward passes keep the fused attention kernel.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor

Grid = tuple[int, int]
HEAD_FUSIONS = ("mean", "max", "min")


def _layers(attentions: Sequence[Tensor | np.ndarray] | Tensor | np.ndarray) -> list[Tensor]:
    """Per-block attentions (a list, or one (layers, B, heads, T, T) array) -> validated CPU tensors.

    Converted to float64 one block at a time by the callers, so a large model's maps are never all
    held in double precision at once."""
    layers = [torch.as_tensor(a).detach().cpu() for a in attentions]
    if not layers:
        raise ValueError("no attention maps given; pass forward_intermediates(x, return_attention=True).attentions")
    for a in layers:
        if a.ndim != 4 or a.shape[-1] != a.shape[-2] or a.shape != layers[0].shape:
            raise ValueError(f"expected per-block attentions of one shape (B, heads, T, T), got {tuple(a.shape)}")
    return layers


def _check_tokens(t: int, num_prefix_tokens: int, grid_size: Grid) -> None:
    gh, gw = grid_size
    if t != num_prefix_tokens + gh * gw:
        raise ValueError(
            f"attention has {t} tokens but num_prefix_tokens={num_prefix_tokens} + grid {gh}x{gw} = "
            f"{num_prefix_tokens + gh * gw}; pass the model's num_prefix_tokens and the grid_size that "
            "forward_intermediates returned"
        )


def rollout_matrix(
    attentions: Sequence[Tensor | np.ndarray] | Tensor | np.ndarray,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
) -> np.ndarray:
    """Token-to-input mixing through all blocks, (B, T, T): row i says how much of each input token
    reaches output token i when attention is treated as linear mixing.

    Per block: fuse heads, optionally zero the weakest ``discard_ratio`` of each row (never the
    diagonal), add the identity for the residual connection, row-normalise; then multiply the blocks,
    last block on the left. Without discarding, (W + I) / 2 is what the row normalisation gives.
    """
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion={head_fusion!r} is not one of {HEAD_FUSIONS}")
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
    layers = _layers(attentions)
    b, _, t, _ = layers[0].shape
    eye = torch.eye(t, dtype=torch.float64)
    n_drop = int(discard_ratio * t)
    out = eye.expand(b, t, t)
    for a in layers:
        a = a.to(torch.float64)
        fused = {"mean": a.mean, "max": a.amax, "min": a.amin}[head_fusion](1)  # (B, T, T)
        if n_drop:
            off_diag = fused.masked_fill(eye.bool(), float("inf"))  # the diagonal is never among the weakest
            fused = fused.scatter(-1, off_diag.topk(n_drop, dim=-1, largest=False).indices, 0.0)
        mix = fused + eye
        out = (mix / mix.sum(-1, keepdim=True)) @ out
    return out.numpy()


def attention_rollout(
    attentions: Sequence[Tensor | np.ndarray] | Tensor | np.ndarray,
    num_prefix_tokens: int,
    grid_size: Grid,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
    readout: str | Tensor | np.ndarray | None = None,
) -> np.ndarray:
    """How much of each patch reaches the representation the classifier sees, (B, gh, gw).

    ``readout`` says how the classifier reads the final tokens (``attention_pass`` gives it for a model):
    ``"token"``: the class token (the first prefix token), so the map is its row of the rollout over the
    patch columns; ``"mean"`` (gap): the mean of the patch rows; a (B, heads, 1, gh*gw) array: a MAP head's
    attention over the patch tokens (``forward_intermediates(...).pool_attention``), whose head-averaged
    weights combine the patch rows. None: ``"token"`` with prefix tokens, else ``"mean"``. Register tokens
    (prefix tokens after the class token) are never read, so they are rows and columns left out. The values
    are the raw shares (the prefix tokens take the rest of each row's unit mass); scale them for display.
    """
    r = rollout_matrix(attentions, head_fusion, discard_ratio)
    _check_tokens(r.shape[-1], num_prefix_tokens, grid_size)
    p = num_prefix_tokens
    if readout is None:
        readout = "token" if p else "mean"
    if isinstance(readout, str):
        if readout not in ("token", "mean"):
            raise ValueError(f"readout={readout!r} is not 'token', 'mean' or a MAP head's attention array")
        rows = r[:, 0, p:] if readout == "token" else r[:, p:, p:].mean(1)
    else:
        w = torch.as_tensor(readout).detach().cpu().to(torch.float64).mean(1)[:, 0]  # (B, gh*gw), heads averaged
        if w.shape != (len(r), r.shape[-1] - p):
            raise ValueError(f"MAP attention of shape {tuple(torch.as_tensor(readout).shape)} does not cover the "
                             f"{r.shape[-1] - p} patch tokens of {len(r)} images")
        rows = (w[:, None] @ torch.from_numpy(r[:, p:, p:]))[:, 0].numpy()
    return rows.reshape(len(r), *grid_size)


def patch_centres(grid_size: Grid, patch_size: int | Grid) -> np.ndarray:
    """(gh * gw, 2) pixel coordinates (y, x) of the token centres in row-major order.

    ``patch_size`` is the pixel extent of one token: the patch size for plain ViTs, the image size
    divided by the grid for hybrids (backbone stride x patch size)."""
    ph, pw = (patch_size, patch_size) if isinstance(patch_size, (int, float)) else patch_size
    gh, gw = grid_size
    ys, xs = np.meshgrid((np.arange(gh) + 0.5) * ph, (np.arange(gw) + 0.5) * pw, indexing="ij")
    return np.stack([ys.ravel(), xs.ravel()], 1)


def mean_attention_distance(
    attentions: Sequence[Tensor | np.ndarray] | Tensor | np.ndarray,
    grid_size: Grid,
    patch_size: int | Grid,
    num_prefix_tokens: int,
) -> np.ndarray:
    """Attention distance in pixels per (layer, head), the paper's Fig. 7 (right) / appendix D.7.

    For each patch query: sum over patch keys of attention weight x distance between the two patch
    centres; averaged over queries and images. Prefix (class) tokens are left out as queries and as
    keys, and the patch weights are used as they are (not renormalised), so attention a query pays to
    the class token counts as distance 0.
    """
    layers = _layers(attentions)
    _check_tokens(layers[0].shape[-1], num_prefix_tokens, grid_size)
    p = num_prefix_tokens
    c = torch.from_numpy(patch_centres(grid_size, patch_size))
    dist = torch.cdist(c, c)  # (N, N) pixels
    per_layer = [(a[..., p:, p:].to(torch.float64) * dist).sum(-1).mean(dim=(0, 2)) for a in layers]  # (heads,)
    return torch.stack(per_layer).numpy()


class AttentionPass(NamedTuple):
    """What one explicit-attention pass gives: logits, per-block attentions (B, heads, T, T), the patch
    grid, and how the classifier reads the tokens (``attention_rollout``'s ``readout``)."""

    logits: Tensor
    attentions: list[Tensor]
    grid_size: Grid
    readout: str | Tensor  # "token", "mean", or the MAP head's attention (B, heads, 1, gh*gw)
    tokens: Tensor  # the last block's output tokens, before the final norm (norms.token_norms)


@torch.no_grad()
def attention_pass(model: torch.nn.Module, x: Tensor) -> AttentionPass:
    """One forward pass with the attention probabilities kept (the explicit kernel)."""
    out = model.forward_intermediates(x, return_attention=True)
    readout = {"token": "token", "gap": "mean"}.get(model.cfg.classifier, out.pool_attention)
    return AttentionPass(model.forward_head(out.features), out.attentions, out.grid_size, readout, out.tokens[-1])


def collect_attention(model: torch.nn.Module, x: Tensor) -> tuple[Tensor, list[Tensor], Grid]:
    """(logits, per-block attentions, grid_size): the first three fields of ``attention_pass``."""
    logits, attentions, grid, *_ = attention_pass(model, x)
    return logits, attentions, grid
