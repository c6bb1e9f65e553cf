"""``create_model``: a registered model, optionally with weights of any format or pretrained by name.

It joins the two packages that must not import each other's way: ``models`` (names -> configs ->
modules) and ``weights`` (files -> vitlab keys -> modules), so it lives above both.
"""
from __future__ import annotations

import os
from typing import Any

from torch import nn

from .models.registry import get_config, model_from_config
from .weights.catalog import pretrained_for
from .weights.load import load_weights


def create_model(name: str, *, pretrained: str | None = None, weights: str | os.PathLike | None = None,
                 strict: bool = True, **overrides: Any) -> nn.Module:
    """Build a registered model, e.g. ``create_model("vit_b16", num_classes=10, img_size=384)``.

    ``overrides``: fields of the variant's config class (ViTConfig, or ResNetConfig for ``resnet*``).
    ``pretrained``: weights from the catalog (``vitlab pretrained``), by tag (``"augreg_in21k"``) or full
    name (``"vit_b16.augreg_in21k"``), downloaded once; the entry's classes, image size, normalisation and
    test-time preprocessing become the config's, under ``overrides`` (e.g. ``num_classes=10`` for a new head).
    ``weights``: a checkpoint path in any supported format (official .npz, timm, Hugging Face, vitlab) or a
    pretrained name; position embeddings are resampled and a mismatched head replaced as the loader explains.
    """
    if pretrained is not None and weights is not None:
        raise ValueError("give pretrained= (a catalog name) or weights= (a checkpoint), not both")
    if pretrained is not None:
        entry = pretrained_for(name, pretrained)
        fields = {**entry.config_fields(), "img_size": entry.img_size, "representation_size": entry.representation_size}
        if overrides.get("num_classes", entry.num_classes) != entry.num_classes:
            fields["class_names"] = None  # the catalog's names belong to the head being replaced
        overrides = {**fields, **overrides}
        weights = entry.name
    model = model_from_config(get_config(name, **overrides))
    if weights is not None:
        load_weights(model, weights, strict=strict)
    return model
