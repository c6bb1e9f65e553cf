"""Classify image files with a checkpoint's own preprocessing, optionally drawing attention rollout.

A file that cannot be read is reported in its Prediction (``error``) and the others go on; nothing
about one bad file stops the batch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..data.datasets import image_to_array, load_image
from ..data.transforms import preprocess_pil
from ..models.vit import VisionTransformer
from .attention import attention_rollout, collect_attention
from .plots import plot_rollout

PathLike = str | os.PathLike


@dataclass
class Prediction:
    """One image's result: top-k (class name, softmax probability), or the error that stopped it."""

    path: str
    top: list[tuple[str, float]]
    error: str | None = None
    attention_png: str | None = None


def class_names(model: VisionTransformer) -> list[str]:
    """The checkpoint's class names, or class_<i> when it carries none."""
    names = model.cfg.class_names
    return list(names) if names else [f"class_{i}" for i in range(model.cfg.num_classes)]


def attention_png_paths(out: PathLike, images: Sequence[PathLike]) -> list[Path]:
    """Where ``--attention OUT.png`` writes: OUT itself for one image; for several,
    OUT_<position>_<image stem>.png next to it (the position keeps same-named files apart)."""
    out = Path(out)
    if len(images) == 1:
        return [out]
    suffix = out.suffix or ".png"
    return [out.with_name(f"{out.stem}_{k:02d}_{Path(p).stem}{suffix}") for k, p in enumerate(images)]


@torch.no_grad()
def predict_files(
    model: VisionTransformer,
    images: Sequence[PathLike],
    topk: int = 5,
    attention: PathLike | None = None,
    batch_size: int = 32,
) -> list[Prediction]:
    """Top-k classes for each image file, resized/converted/normalised as the model expects (its
    img_size, in_chans, mean, std), on the model's device (``vitlab.load_model`` reads a checkpoint).
    With ``attention``, also one PNG per image of its rollout map (see attention_png_paths).
    Unreadable files get ``error`` set; the rest are classified."""
    model.eval()
    cfg = model.cfg
    if cfg.num_classes == 0:
        raise ValueError("this checkpoint has no classification head (num_classes=0); nothing to predict")
    if topk < 1:
        raise ValueError(f"--topk must be >= 1, got {topk}")
    k = min(topk, cfg.num_classes)
    names = class_names(model)
    pngs = attention_png_paths(attention, images) if attention is not None else None
    if pngs:
        pngs[0].parent.mkdir(parents=True, exist_ok=True)  # fail now, not after the work
    results = [Prediction(str(p), []) for p in images]
    ready: list[tuple[int, torch.Tensor, np.ndarray | None]] = []
    for i, p in enumerate(images):
        try:
            img = load_image(p)
            x = preprocess_pil(img, cfg.img_size, cfg.mean, cfg.std, cfg.in_chans)
            ready.append((i, x, image_to_array(img) if pngs else None))
        except (OSError, ValueError) as e:  # FileNotFoundError is an OSError
            results[i].error = str(e)
    dev = next(model.parameters()).device
    for start in range(0, len(ready), batch_size):
        chunk = ready[start : start + batch_size]
        x = torch.stack([c[1] for c in chunk]).to(dev)
        if pngs:
            logits, attns, grid = collect_attention(model, x)
            maps = attention_rollout(attns, model.num_prefix_tokens, grid)
        else:
            logits = model(x)
        prob, idx = logits.float().softmax(-1).topk(k, dim=-1)
        for j, (i, _, arr) in enumerate(chunk):
            res = results[i]
            res.top = [(names[c], float(q)) for q, c in zip(prob[j].tolist(), idx[j].tolist())]
            if pngs:
                title = f"{Path(res.path).name}: {res.top[0][0]} ({res.top[0][1]:.2f})"
                res.attention_png = str(plot_rollout([arr], maps[j : j + 1], pngs[i], titles=[title]))
    return results


def format_prediction(p: Prediction) -> str:
    """The lines `vitlab predict` prints for one image."""
    if p.error:
        return f"{p.path}: error: {p.error}"
    lines = [p.path] + [f"  {q:7.4f}  {name}" for name, q in p.top]
    if p.attention_png:
        lines.append(f"  attention rollout -> {p.attention_png}")
    return "\n".join(lines)
