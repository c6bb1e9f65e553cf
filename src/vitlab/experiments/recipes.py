"""The recipes the experiments' arms are made of: plain config dicts for ``vitlab.train.train``, the models
at each budget, and the derived datasets (class splits, labelled subsets) written as ordinary ``.npz``.

Budgets differ in data, model size and steps, not in kind: ``smoke`` uses scikit-learn's digits
(8x8, resized to 28x28) and one-block models so tests finish in seconds; ``quick`` and ``full`` use
Fashion-MNIST and the main job's 6 x 128 patch-7 ViT (``configs/fmnist.yaml``).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..utils.io import atomic_write

BUDGETS = ("smoke", "quick", "full")


@dataclass(frozen=True)
class Scale:
    """What a budget means for every experiment: the dataset, the models' size and how long runs are."""

    dataset: str
    normalize: str
    flip: bool  # horizontal flips: garments yes, digits no
    vit: dict[str, Any]  # model section of the ViT (the main job's encoder at quick/full)
    resnet: dict[str, Any]  # the BiT ResNet baseline
    hybrid: dict[str, Any]  # a small ResNet stem + stage feeding the same ViT
    steps: float  # multiplier on each experiment's quick step counts
    batch: int
    eval_batch: int


_VIT = {"name": "vit_mnist", "img_size": 28, "in_chans": 1, "patch_size": 7, "embed_dim": 128, "depth": 6,
        "num_heads": 4, "mlp_dim": 256, "act": "gelu"}
_TINY_VIT = {**_VIT, "embed_dim": 32, "depth": 1, "num_heads": 2, "mlp_dim": 64}

SCALES = {
    "smoke": Scale("digits", "minus1_1", False, _TINY_VIT,
                   {"name": "resnet26", "img_size": 28, "in_chans": 1, "layers": [1], "width": 0.5},
                   {**_TINY_VIT, "patch_size": 1, "backbone_layers": []},  # the ResNet root only: 7x7 map
                   steps=0.0, batch=16, eval_batch=512),
    "quick": Scale("fashion_mnist", "fashion_mnist", True, _VIT,
                   # BiT ResNet, one unit per stage at half width: 2.0M params (the ViT: 0.81M)
                   {"name": "resnet26", "img_size": 28, "in_chans": 1, "layers": [1, 1, 1, 1], "width": 0.5},
                   # R+ViT: the ResNet root and two 1-unit stages (28 -> 4x4 feature map), 1x1 patches, the same ViT
                   {**_VIT, "patch_size": 1, "backbone_layers": [1, 1]},
                   steps=1.0, batch=128, eval_batch=1000),
}
SCALES["full"] = Scale(**{**SCALES["quick"].__dict__, "steps": 4.0})

SMOKE_STEPS = 2


def steps(scale: Scale, quick_steps: int) -> int:
    """An arm's optimizer steps at this budget: ``quick_steps`` x the budget's factor (smoke: 2)."""
    return SMOKE_STEPS if scale.steps == 0 else max(1, round(quick_steps * scale.steps))


def classify(dataset: str, model: dict[str, Any], scale: Scale, n_steps: int, seed: int, *, lr: float = 2e-3,
             optim: str = "adamw", weight_decay: float = 0.05, batch: int | None = None, train_limit: int | None = None,
             dev_fraction: float = 0.1, label_smoothing: float = 0.1, objective: str = "classify",
             device: str = "auto") -> dict[str, Any]:
    """The main job's optimiser and schedule (AdamW, cosine, label smoothing 0.1, clip 1) with flips as the only
    augmentation (the main job adds 1-px shifts and random erasing for its 38 epochs) as a config dict,
    with a dev split held out from the training data for every per-epoch evaluation (the test set is read
    once, at the end). Warmup: 5% of the steps."""
    return {
        "data": {"dataset": dataset, "batch_size": batch or scale.batch, "normalize": scale.normalize,
                 "dev_fraction": dev_fraction, "train_limit": train_limit, "crop_scale": [1.0, 1.0],
                 "crop_ratio": [1.0, 1.0], "flip": scale.flip,
                 "label_smoothing": label_smoothing if objective == "classify" else 0.0,
                 "eval_batch_size": scale.eval_batch},
        "model": copy.deepcopy(model),
        "optim": {"name": optim, "lr": lr, "weight_decay": weight_decay, "clip_grad_norm": 1.0},
        "schedule": {"steps": n_steps, "warmup_steps": max(1, n_steps // 20), "decay": "cosine"},
        "train": {"seed": seed, "objective": objective, "device": device, "ckpt_every_steps": 200, "keep_last": 1,
                  "log_every_steps": 20},
    }


def masked_patch(dataset: str, model: dict[str, Any], scale: Scale, n_steps: int, seed: int,
                 device: str = "auto") -> dict[str, Any]:
    """``configs/masked_pretrain.yaml`` as a dict: Adam lr 2e-4, no weight decay, warmup, cosine, no labels."""
    cfg = classify(dataset, model, scale, n_steps, seed, lr=2e-4, optim="adam", weight_decay=0.0,
                   objective="masked_patch", device=device)
    cfg["schedule"]["warmup_steps"] = max(1, n_steps // 10)
    return cfg


def finetune(dataset: str, model: dict[str, Any], weights: str, scale: Scale, n_steps: int, seed: int, *,
             img_size: int = 28, pos_resample: str = "official", lr: float = 0.01, batch: int = 50,
             device: str = "auto") -> dict[str, Any]:
    """``configs/finetune.yaml`` as a dict (the paper's fine-tuning): start from ``weights`` with a new
    zero-initialised head, SGD momentum 0.9, no weight decay, cosine with warmup, clip 1, optionally at a
    higher resolution with the position embeddings resampled by ``pos_resample``."""
    m = {**copy.deepcopy(model), "weights": weights, "reset_head": True, "img_size": img_size,
         "pos_resample": pos_resample}
    cfg = classify(dataset, m, scale, n_steps, seed, lr=lr, optim="sgd", weight_decay=0.0, batch=batch,
                   label_smoothing=0.0, device=device)
    cfg["schedule"]["warmup_steps"] = max(1, n_steps // 10)
    return cfg


def scratch(dataset: str, model: dict[str, Any], scale: Scale, n_steps: int, seed: int, *, lr: float = 2e-3,
            batch: int = 50, device: str = "auto") -> dict[str, Any]:
    """The main job's recipe on the small downstream set alone (no pretraining)."""
    return classify(dataset, model, scale, n_steps, seed, lr=lr, batch=batch, device=device)


# ------------------------------------------------------------------------------------- derived data
def class_split(spec: str, classes: list[int], out: Path, per_class: int | None = None, seed: int = 0) -> str:
    """Write the images of ``classes`` (relabelled 0..k-1, train and test splits) to ``out`` as .npz, with at
    most ``per_class`` training images of each class (a fixed random draw): an ordinary dataset path for
    ``data.dataset``. Written once; an existing file is reused, so resumed experiments see the same data."""
    from ..data import open_dataset

    if out.is_file():
        return str(out)
    arrays: dict[str, np.ndarray] = {}
    names: list[str] = []
    for split in ("train", "test"):
        ds = open_dataset(spec, split, in_memory=True)  # the derived .npz holds the pixels
        y = ds.labels.numpy()
        keep = []
        rng = np.random.default_rng(seed)
        for c in classes:
            idx = np.flatnonzero(y == c)
            if split == "train" and per_class is not None:
                if len(idx) < per_class:
                    raise ValueError(f"{spec} class {c} has {len(idx)} training images, fewer than {per_class}")
                idx = np.sort(rng.choice(idx, per_class, replace=False))
            keep.append(idx)
        idx = np.sort(np.concatenate(keep))
        remap = {c: i for i, c in enumerate(classes)}
        arrays[f"x_{split}"] = ds.images.numpy()[idx]
        arrays[f"y_{split}"] = np.array([remap[int(v)] for v in y[idx]], dtype=np.int64)
        names = [ds.classes[c] for c in classes]
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, classes=np.array(names), **arrays)

    atomic_write(out, write)
    return str(out)
