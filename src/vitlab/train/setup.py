"""A run's ingredients, built from the recipe before the first step: the data splits and the model."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..data import get_normalize
from ..data.splits import RunData, open_splits
from ..utils.eval_fields import CONFIG_FIELDS
from .config import Config, model_options
from .fit import check_channels, fit_model_options


def load_data(cfg: Config, run_dir: Path, write: bool) -> RunData:
    """The recipe's splits (vitlab.data.splits.open_splits; ``write``: this process records RUN/split.json), an
    image folder decoded into memory at data.image_size or the model's size."""
    return open_splits(cfg.data, run_dir, cfg.train.seed, write, size=model_options(cfg).get("img_size"))


def build_run_model(cfg: Config, data: RunData) -> nn.Module:
    """``build_model`` for ``data``: for a data set given as a path, input channels and image size come
    from the images unless the recipe sets them (a note on what was chosen goes to ``data.notes``)."""
    options, size_key = model_options(cfg), "model.img_size"
    if cfg.data.image_size and "img_size" not in options and not data.train.in_memory:  # the size crops come out at
        options, size_key = {**options, "img_size": cfg.data.image_size}, "data.image_size"
    options, note = fit_model_options(data.spec, data.train, options, cfg.model.name, size_key)
    if note:
        data.notes.append(note)
    model = build_model(cfg, data.classes, options)
    check_channels(model.cfg.in_chans, data.train, data.spec, cfg.model.weights or cfg.model.name)
    return model


def build_model(cfg: Config, classes: list[str], options: dict[str, Any] | None = None) -> nn.Module:
    """The recipe's model with its head sized for ``classes`` (headless, ``num_classes=0``, for
    ``train.objective=masked_patch``), weights from ``model.weights`` and the preprocessing metadata
    (``data.normalize``, ``data.eval_*``, class names) set. ``options``: model config fields (default: the
    recipe's model section; the trainer passes them completed from the data)."""
    from ..api import create_model
    from ..weights import load_model
    from .objectives import OBJECTIVES

    m, opts = cfg.model, dict(model_options(cfg) if options is None else options)
    n = 0 if OBJECTIVES[cfg.train.objective].headless else len(classes)
    opts.setdefault("num_classes", n)
    model = create_model(m.name, weights=m.weights, **opts) if m.name else load_model(m.weights, **opts)
    if m.reset_head:
        model.reset_classifier(n, drop_pre_logits=True)
    if model.cfg.num_classes != n:
        raise ValueError(f"model.num_classes={model.cfg.num_classes} but the data has {len(classes)} classes"
                         + (" (masked_patch pretraining needs num_classes=0)" if n == 0 else ""))
    if cfg.data.normalize is not None:
        model.cfg.mean, model.cfg.std = get_normalize(cfg.data.normalize)
    for key in CONFIG_FIELDS:  # data.eval_* -> the model's test-time preprocessing
        if getattr(cfg.data, key) is not None:
            setattr(model.cfg, key, getattr(cfg.data, key))
    model.cfg.validate()
    if n:
        model.cfg.class_names = tuple(classes)
    return model
