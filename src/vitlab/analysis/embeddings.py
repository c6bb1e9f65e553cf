"""What the embeddings learned: principal components of the patch-embedding filters (paper Fig. 7
left) and the cosine similarity of position embeddings across the patch grid (Fig. 7 centre)."""
from __future__ import annotations

import numpy as np
import torch

from ..models.pos_embed import sincos_2d
from ..models.vit import PatchEmbed, VisionTransformer


def grid_position_embeddings(model: VisionTransformer) -> np.ndarray:
    """The position embedding each patch receives, (gh, gw, D), whatever the model's kind.

    ``learn``: the 1-D table without the class entry; ``learn2d``: row half and column half
    concatenated, as the forward pass adds them; ``sincos``: the fixed table. ``none`` has nothing to
    show: the patches carry no position at all, so attention treats them as an unordered set.
    """
    kind = model.cfg.pos_embed
    gh, gw = model.grid
    with torch.no_grad():
        if kind == "learn":
            emb = model.pos_embed[0, model.num_pos_prefix :]
        elif kind == "learn2d":
            rows = model.pos_embed_row[0][:, None].expand(gh, gw, -1)
            cols = model.pos_embed_col[0][None, :].expand(gh, gw, -1)
            emb = torch.cat([rows, cols], dim=-1)
        elif kind == "sincos":
            emb = sincos_2d((gh, gw), model.cfg.embed_dim)[0]
        else:
            raise ValueError(
                "this model has no position embeddings (pos_embed='none'): patches carry no position, so "
                "there is no similarity structure to show"
            )
        return emb.detach().cpu().double().reshape(gh, gw, -1).numpy()


def cosine_similarity_grid(emb: np.ndarray) -> np.ndarray:
    """(gh, gw, D) embeddings -> (gh, gw, gh, gw): entry [i, j, k, l] = cos(emb[i, j], emb[k, l])."""
    gh, gw, d = emb.shape
    flat = emb.reshape(gh * gw, d).astype(np.float64)
    flat = flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)
    return (flat @ flat.T).reshape(gh, gw, gh, gw)


def position_embedding_similarity(model: VisionTransformer) -> np.ndarray:
    """Cosine similarity of every patch's position embedding to every other's, (gh, gw, gh, gw);
    the class-token entry is excluded. Tile [i, j] of the paper's figure is ``sim[i, j]``."""
    return cosine_similarity_grid(grid_position_embeddings(model))


def embedding_filters_pca(model: VisionTransformer, n_components: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """Principal components of the D patch-embedding filters, each a (C, P, P) image.

    Returns (components (n, C, P, P), explained variance ratio (n,)), n = min(n_components, D,
    C*P*P). The filters are centred over D first (as sklearn's PCA); each component's sign is fixed
    so its largest-magnitude entry is positive. Only pixel patch embeddings qualify: in a hybrid the
    projection is a 1x1 conv over ResNet feature channels, whose components are no images.
    """
    if not isinstance(model.patch_embed, PatchEmbed):
        raise ValueError(
            "the filter PCA needs a pixel patch embedding; this hybrid embeds ResNet feature-map cells "
            "(a 1x1 conv over feature channels), whose components are not image patches"
        )
    if n_components < 1:
        raise ValueError(f"n_components must be >= 1, got {n_components}")
    w = model.patch_embed.proj.weight.detach().cpu().double().numpy()  # (D, C, P, P)
    d, shape = w.shape[0], w.shape[1:]
    x = w.reshape(d, -1)
    x = x - x.mean(0, keepdims=True)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    n = min(n_components, vt.shape[0])
    var = s**2
    ratio = var / var.sum() if var.sum() > 0 else np.zeros_like(var)
    comps = vt[:n]
    sign = np.sign(comps[np.arange(n), np.abs(comps).argmax(1)])
    comps = comps * np.where(sign == 0, 1.0, sign)[:, None]
    return comps.reshape(n, *shape), ratio[:n]
