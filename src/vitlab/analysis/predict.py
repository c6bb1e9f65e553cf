"""Classify image files with a checkpoint's own preprocessing, optionally drawing attention rollout.

A file that cannot be read is reported in its Prediction (``error``) and the others go on; nothing
about one bad file stops the batch.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..data.sources import image_to_array, load_image
from ..data.transforms import EvalTransform
from ..models.vit import VisionTransformer
from .attention import attention_pass, attention_rollout
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
    progress: bool = False,
) -> list[Prediction]:
    """Top-k classes for each image file, preprocessed as the model's metadata says (EvalTransform.for_model:
    its Preprocess, in_chans, mean, std; what `vitlab eval` uses), on the model's device
    (``vitlab.load_model`` reads a checkpoint). With ``attention``, also one PNG per image of its rollout
    map (see attention_png_paths).
    Unreadable files get ``error`` set; the rest are classified, in batches of ``batch_size`` (a
    progress bar with ``progress`` when there is more than one batch). ``model`` may also be a
    vitlab.deploy.BackendModel (ONNX Runtime, OpenVINO), without attention maps."""
    if attention is not None and not isinstance(model, VisionTransformer):
        raise ValueError("attention maps are computed by the torch backend only; drop --attention or use --backend torch")
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
    tf = EvalTransform.for_model(cfg)
    results = [Prediction(str(p), []) for p in images]
    dev = next(model.parameters(), torch.empty(0)).device  # no parameters: a deploy.BackendModel (CPU)
    bar = tqdm(total=len(images), desc="predicting", unit="img", disable=not progress or len(images) <= batch_size)
    # Decode one batch at a time: memory stays at one batch of images however many files there are.
    for start in range(0, len(images), batch_size):
        chunk: list[tuple[int, torch.Tensor, np.ndarray | None]] = []
        for i in range(start, min(start + batch_size, len(images))):
            try:
                img = load_image(images[i])
                x = tf.image(img)
                chunk.append((i, x, _seen(img, tf) if pngs else None))
            except (OSError, ValueError) as e:  # FileNotFoundError is an OSError
                results[i].error = str(e)
        bar.update(min(batch_size, len(images) - start))
        if not chunk:
            continue
        x = torch.stack([c[1] for c in chunk]).to(dev)
        if pngs:
            logits, attns, grid, readout, _ = attention_pass(model, x)
            maps = attention_rollout(attns, model.num_prefix_tokens, grid, readout=readout)
        else:
            logits = model(x)
        prob, idx = logits.float().softmax(-1).topk(k, dim=-1)
        for j, (i, _, arr) in enumerate(chunk):
            res = results[i]
            res.top = [(names[c], float(q)) for q, c in zip(prob[j].tolist(), idx[j].tolist())]
            if pngs:
                title = f"{Path(res.path).name}: {res.top[0][0]} ({res.top[0][1]:.2f})"
                res.attention_png = str(plot_rollout([arr], maps[j : j + 1], pngs[i], titles=[title]))
    bar.close()
    return results


def _seen(img: Image.Image, tf: EvalTransform) -> np.ndarray:
    """The part of the image the model sees (the centre crop, when its preprocessing crops), at the
    image's own resolution: what an attention map is drawn over."""
    box = tf.preprocess.crop_box(img.height, img.width)
    return image_to_array(img.crop(tuple(round(v) for v in box)))


def write_predictions(results: Sequence[Prediction], out: PathLike) -> Path:
    """Write predictions as .csv (path, error, class_1, prob_1, ... class_k, prob_k) or .jsonl (one
    {"path", "top": [{"class", "prob"}], "error"} object per line); unusable files keep their row with
    the error, so the output lines up with the input list."""
    out = Path(out)
    kind = out.suffix.lower()
    if kind not in (".csv", ".jsonl"):
        raise ValueError(f"--out {out}: the file name must end in .csv or .jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    k = max((len(r.top) for r in results), default=0)
    with open(out, "w", newline="") as f:
        if kind == ".jsonl":
            for r in results:
                rec = {"path": r.path, "top": [{"class": c, "prob": q} for c, q in r.top], "error": r.error}
                if r.attention_png:
                    rec["attention_png"] = r.attention_png
                f.write(json.dumps(rec) + "\n")
        else:
            w = csv.writer(f)
            w.writerow(["path", "error"] + [f"{h}_{i}" for i in range(1, k + 1) for h in ("class", "prob")])
            for r in results:
                w.writerow([r.path, r.error or ""] + [v for c, q in r.top for v in (c, f"{q:.6f}")])
    return out


def format_prediction(p: Prediction) -> str:
    """The lines `vitlab predict` prints for one image."""
    if p.error:
        return f"{p.path}: error: {p.error}"
    lines = [p.path] + [f"  {q:7.4f}  {name}" for name, q in p.top]
    if p.attention_png:
        lines.append(f"  attention rollout -> {p.attention_png}")
    return "\n".join(lines)
