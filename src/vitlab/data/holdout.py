"""Deterministic, stratified held-out shares of any source (indices only; nothing is decoded)."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .base import Source


def holdout_mask(ds: Source, fraction: float, seed: int = 0, name: str = "fraction") -> Tensor:
    """Boolean mask of a deterministic, stratified held-out share of `ds` (True = held out).

    Each class gives its share (largest-remainder rounding so round(fraction * N) images are held out);
    the same seed always gives the same split, independent of the global RNG. `name` is the setting
    errors name (dev_fraction, data.test_fraction)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {fraction}")
    n = len(ds)
    n_out = int(round(fraction * n))
    if n_out == 0 or n_out == n:
        raise ValueError(f"{name}={fraction} of {n} images leaves an empty train or held-out set")
    g = torch.Generator().manual_seed(seed)
    counts = np.asarray(ds.class_counts(), dtype=np.float64)
    quota = counts * n_out / n
    take = np.floor(quota).astype(np.int64)
    order = np.argsort(-(quota - take), kind="stable")
    take[order[: n_out - int(take.sum())]] += 1
    mask = torch.zeros(n, dtype=torch.bool)
    for c in range(ds.num_classes):
        idx = (ds.labels == c).nonzero().flatten()
        perm = idx[torch.randperm(len(idx), generator=g)]
        mask[perm[: take[c]]] = True
    return mask


def train_dev_split(ds: Source, dev_fraction: float, seed: int = 0) -> tuple[Source, Source]:
    """(train, dev): the paper's held-out split (2% of CIFAR train, 10% of Pets); see holdout_mask."""
    mask = holdout_mask(ds, dev_fraction, seed, "dev_fraction")
    return ds.subset(~mask), ds.subset(mask)
