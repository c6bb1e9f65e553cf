"""The values that define test-time preprocessing (vitlab.data.Preprocess), checked the same way wherever
they are set: Preprocess itself, the model configs that carry them as metadata (their eval_* fields) and
the recipe's data.eval_* keys. Here, below both models and data, which may not import each other."""
from __future__ import annotations

from typing import Any

RESIZES = ("whole", "shorter")
INTERPOLATIONS = ("bilinear", "bicubic")
# The model-config fields that hold the definition (and the recipe's data.* keys that set them).
CONFIG_FIELDS = ("eval_resize", "eval_crop_pct", "eval_interpolation")


def check_fields(where: str, resize: Any, crop_pct: Any, interpolation: Any) -> None:
    """Refuse values that define no preprocessing, naming the fields as the caller spells them: ``where`` +
    resize / crop_pct / interpolation (e.g. "data.eval_" for the recipe's keys)."""
    if resize not in RESIZES:
        raise ValueError(f"{where}resize={resize!r} is not one of {RESIZES} (whole: the whole image to the model's "
                         "size; shorter: aspect ratio kept, then a centre crop)")
    if isinstance(crop_pct, bool) or not isinstance(crop_pct, (int, float)) or not 0 < crop_pct <= 1:
        raise ValueError(f"{where}crop_pct={crop_pct!r} must be a number in (0, 1] (1: keep the whole scaled image; "
                         "timm's ImageNet models use 0.875-0.95)")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"{where}interpolation={interpolation!r} is not one of {INTERPOLATIONS}")
