"""The paper's figures as PNG files (matplotlib, Agg backend: no display needed).

Grids of many small tiles (filters, position similarity) are drawn as one mosaic image with NaN
gutters, so a 14 x 14 grid of 14 x 14 tiles is one imshow call, not 196 axes.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

PathLike = str | Path


def _mosaic(tiles: np.ndarray, cols: int, gap: int = 1) -> np.ndarray:
    """(n, h, w[, c]) tiles -> one (R*(h+gap)-gap, cols*(w+gap)-gap[, c]) array, NaN between tiles."""
    n, h, w = tiles.shape[:3]
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap) + tiles.shape[3:], np.nan)
    for k in range(n):
        r, c = divmod(k, cols)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = tiles[k]
    return out


def _save(fig: plt.Figure, path: PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_filters(components: np.ndarray, path: PathLike, explained_variance_ratio: np.ndarray | None = None) -> Path:
    """Principal components (n, C, P, P) as a grid of patch images, each scaled to its own range
    (colour for C = 3, grey otherwise), in the order of explained variance (paper Fig. 7 left)."""
    n, c = components.shape[:2]
    lo = components.min(axis=(1, 2, 3), keepdims=True)
    hi = components.max(axis=(1, 2, 3), keepdims=True)
    tiles = (components - lo) / np.maximum(hi - lo, 1e-12)
    tiles = tiles.transpose(0, 2, 3, 1) if c == 3 else tiles.mean(1)
    cols = min(n, 7)
    mosaic = _mosaic(tiles, cols)
    if c == 3:
        mosaic = np.where(np.isnan(mosaic), 1.0, mosaic)  # white gutters
    fig, ax = plt.subplots(figsize=(1.2 * cols, 1.2 * math.ceil(n / cols) + 0.6))
    ax.imshow(mosaic, cmap="gray", interpolation="nearest", vmin=0, vmax=1)
    ax.set_axis_off()
    title = f"RGB embedding filters: first {n} principal components" if c == 3 else f"Embedding filters: first {n} principal components"
    if explained_variance_ratio is not None:
        title += f" ({100 * float(np.sum(explained_variance_ratio)):.1f}% of variance)"
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def plot_position_similarity(sim: np.ndarray, path: PathLike) -> Path:
    """(gh, gw, gh, gw) similarities as one tile per position, tiles laid out on the grid
    (paper Fig. 7 centre): tile (i, j) shows how similar every position is to position (i, j)."""
    gh, gw = sim.shape[:2]
    tiles = sim.reshape(gh * gw, gh, gw)
    mosaic = _mosaic(tiles, gw)
    size = min(12.0, 0.6 * max(gh, gw) + 2)
    fig, ax = plt.subplots(figsize=(size * gw / max(gh, gw) + 1, size * gh / max(gh, gw)))
    im = ax.imshow(mosaic, cmap="viridis", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xticks([(gw + 1) * j + (gw - 1) / 2 for j in range(gw)], [str(j + 1) for j in range(gw)], fontsize=7)
    ax.set_yticks([(gh + 1) * i + (gh - 1) / 2 for i in range(gh)], [str(i + 1) for i in range(gh)], fontsize=7)
    ax.set_xlabel("input patch column")
    ax.set_ylabel("input patch row")
    ax.set_title("Position embedding similarity", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="cosine similarity")
    return _save(fig, path)


def plot_attention_distance(distance: np.ndarray, path: PathLike, img_size: Sequence[int] | None = None) -> Path:
    """(layers, heads) mean attention distance in pixels, one dot per head at its depth (Fig. 7 right)."""
    layers, heads = distance.shape
    fig, ax = plt.subplots(figsize=(5, 4))
    depth = np.arange(1, layers + 1)
    for h in range(heads):
        ax.scatter(depth, distance[:, h], s=14, label=f"head {h + 1}" if heads <= 16 else None)
    ax.set_xlabel("network depth (layer)")
    ax.set_ylabel("mean attention distance (pixels)")
    ax.set_xticks(depth)
    top = float(np.hypot(*img_size)) if img_size is not None else None
    ax.set_ylim(0, top if top else None)
    if heads <= 16:
        ax.legend(fontsize=6, ncol=2, loc="lower right")
    ax.set_title("Mean attention distance per head", fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def upsample_map(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(gh, gw) map -> (H, W) by bilinear interpolation, for drawing over the image."""
    t = torch.as_tensor(np.ascontiguousarray(mask), dtype=torch.float32)[None, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def plot_rollout(
    images: Sequence[np.ndarray], masks: np.ndarray | Sequence[np.ndarray], path: PathLike,
    titles: Sequence[str] | None = None,
) -> Path:
    """For each image (H, W) or (H, W, 3) uint8, of any size: the image and the image with its rollout
    map (gh, gw) overlaid, the map stretched over the whole image (the model's resize) and scaled to
    its own maximum (paper Fig. 6 style). Several images go in one grid, two panels per image."""
    n = len(images)
    if n != len(masks):
        raise ValueError(f"{n} images but {len(masks)} rollout maps")
    pairs_per_row = 1 if n == 1 else 2
    rows = math.ceil(n / pairs_per_row)
    fig, axes = plt.subplots(rows, 2 * pairs_per_row, figsize=(2.6 * 2 * pairs_per_row, 2.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for k, (img, mask) in enumerate(zip(images, masks)):
        r, c = divmod(k, pairs_per_row)
        m = upsample_map(np.asarray(mask), img.shape[:2])
        m = m / m.max() if m.max() > 0 else m
        gray = img.ndim == 2 or img.shape[-1] == 1
        show = img.reshape(img.shape[:2]) if gray else img
        axes[r, 2 * c].imshow(show, cmap="gray" if gray else None)
        axes[r, 2 * c + 1].imshow(show, cmap="gray" if gray else None)
        axes[r, 2 * c + 1].imshow(m, cmap="jet", alpha=0.5, vmin=0, vmax=1)
        if titles is not None:
            axes[r, 2 * c].set_title(titles[k], fontsize=8)
            axes[r, 2 * c + 1].set_title("attention rollout", fontsize=8)
    return _save(fig, path)


def plot_token_norms(
    norm_maps: np.ndarray, patch_norms: np.ndarray, threshold: float, path: PathLike,
    prefix_norms: np.ndarray | None = None, prefix_names: Sequence[str] = (),
) -> Path:
    """The registers paper's Fig. 3: the histogram of patch-token norms (log count) with the high-norm cut,
    the prefix tokens' norms marked, then each image's (gh, gw) norm map on one shared colour scale."""
    n = len(norm_maps)
    cols = min(4, n) + 1
    rows = max(1, math.ceil(n / max(1, cols - 1)))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    h = axes[0, 0]
    h.set_axis_on()
    h.hist(np.ravel(patch_norms), bins=50, color="0.4", log=True)
    h.axvline(threshold, color="r", lw=1, label=f"high-norm cut {threshold:.3g}")
    if prefix_norms is not None and np.size(prefix_norms):
        for j, name in enumerate(prefix_names):
            h.axvline(float(np.median(prefix_norms[:, j])), ls=":", lw=1, color=f"C{j % 10}", label=name)
    h.set_xlabel("token norm", fontsize=8)
    h.set_title("patch-token norms", fontsize=8)
    h.legend(fontsize=6)
    vmax = float(np.max(norm_maps)) if n else 1.0
    for k in range(n):
        r, c = divmod(k, cols - 1)
        ax = axes[r, c + 1]
        im = ax.imshow(norm_maps[k], cmap="viridis", vmin=0, vmax=vmax)
        ax.set_title(f"image {k}: token norms", fontsize=8)
    if n:
        fig.colorbar(im, ax=axes[:, 1:].ravel().tolist(), shrink=0.8)
    return _save(fig, path)
