"""``create_model``: a registered model, optionally with weights of any format.

It joins the two packages that must not import each other's way: ``models`` (names -> configs ->
modules) and ``weights`` (files -> vitlab keys -> modules), so it lives above both.
"""
from __future__ import annotations

import os
from typing import Any

from torch import nn

from .models.registry import get_config, model_from_config
from .weights.load import load_weights


def create_model(name: str, *, weights: str | os.PathLike | None = None, strict: bool = True, **overrides: Any) -> nn.Module:
    """Build a registered model, e.g. ``create_model("vit_b16", num_classes=10, img_size=384)``.

    ``overrides``: fields of the variant's config class (ViTConfig, or ResNetConfig for ``resnet*``).
    ``weights``: a checkpoint path in any supported format (official .npz, timm, Hugging Face, vitlab);
    position embeddings are resampled and a mismatched head replaced as the loader explains.
    """
    model = model_from_config(get_config(name, **overrides))
    if weights is not None:
        load_weights(model, weights, strict=strict)
    return model
