"""A run's ingredients, built from the recipe before the first step: the data splits and the model."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import DatasetSpec, Source, get_normalize, train_dev_split
from ..data.splits import open_run_data
from ..utils.eval_fields import CONFIG_FIELDS
from .config import Config, model_options
from .fit import check_channels, fit_model_options


@dataclass
class Data:
    train: Source
    eval_set: Source  # per-epoch evaluation and "best": the dev split, or test without one
    eval_name: str  # "dev" or "test"
    test: Source  # read for the final result
    test_name: str  # "test", or what stands in for it when the source has no test split (data.test_fraction)
    spec: DatasetSpec  # data.dataset, parsed once
    classes: list[str]
    notes: list[str] = field(default_factory=list)  # what was decided from the data, for the log


def load_data(cfg: Config, run_dir: Path, write: bool) -> Data:
    """Training images (``data.train_limit`` first ones), minus a ``data.dev_fraction`` dev split, and
    test (held out from the source and recorded in RUN/split.json when it has none; ``write``: rank 0)."""
    d = cfg.data
    spec = DatasetSpec.parse(d.dataset)
    run = open_run_data(spec, run_dir, d.test_fraction, cfg.train.seed, d.data_dir,
                        size=d.image_size or model_options(cfg).get("img_size"), on_error=d.on_error,
                        cache=d.cache, write=write, in_memory=d.in_memory)
    train, test, notes = run.train, run.test, list(run.notes)
    if d.train_limit:
        train = train.subset(torch.arange(min(d.train_limit, len(train))))
    if d.dev_fraction > 0:
        train, dev = train_dev_split(train, d.dev_fraction, seed=cfg.train.seed)
        return Data(train, dev, "dev", test, run.test_name, spec, list(train.classes), notes)
    return Data(train, test, "test", test, run.test_name, spec, list(train.classes), notes)


def build_run_model(cfg: Config, data: Data) -> nn.Module:
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
