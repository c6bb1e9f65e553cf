"""Make the model fit the user's data instead of converting the data to fit the model.

A folder of 32x32 RGB photos trained with the default 28x28 one-channel model would silently become
grey 28x28 images. For data sets given as a path (image folders, .npz, IDX/CIFAR folders) the input
channels and, unless the recipe sets them, the image size are taken from the data; an explicit model
setting that contradicts the data's channels is an error naming both. Named data sets (fashion_mnist,
cifar10, digits, ...) keep the recipe's model as it is: their recipes are written for them.
"""
from __future__ import annotations

from typing import Any

from .datasets import NAMED_DATASETS, ImageDataset


def is_named(spec: str) -> bool:
    return spec.lower().replace("-", "_") in NAMED_DATASETS


def _mode(c: int) -> str:
    return {1: "grayscale", 3: "RGB"}.get(c, f"{c}-channel")


def fit_model_options(spec: str, ds: ImageDataset, options: dict[str, Any],
                      from_weights: bool) -> tuple[dict[str, Any], str | None]:
    """`options` (ViTConfig overrides from the recipe) completed from the data, and a line saying what was
    chosen (None for named data sets). `from_weights`: the architecture comes from a checkpoint, whose
    channel count is checked after loading (check_channels)."""
    if is_named(spec):
        return options, None
    out = dict(options)
    c, (h, w) = ds.channels, ds.image_size
    if "in_chans" in out and out["in_chans"] != c:
        raise ValueError(f"model.in_chans={out['in_chans']} but the data ({spec}) is {_mode(c)}, {c} channel(s); "
                         f"remove model.in_chans to take it from the data, or convert the images")
    said = []
    if "in_chans" not in out and not from_weights:
        out["in_chans"] = c
        said.append(f"in_chans={c} ({_mode(c)}, from the data)")
    if "img_size" not in out:
        out["img_size"] = (h, w)
        said.append(f"img_size={h}x{w} (from the data)")
    else:
        size = out["img_size"]
        said.append(f"img_size={size} (model.img_size; the {h}x{w} data is resized to it)")
    return out, "model: " + ", ".join(said)


def check_channels(model_in_chans: int, ds: ImageDataset, spec: str, source: str) -> None:
    """An error naming both sides when a model (e.g. a pretrained checkpoint, `source`) expects another
    number of input channels than the data has; named data sets are converted as before."""
    if not is_named(spec) and model_in_chans != ds.channels:
        raise ValueError(f"{source} expects {model_in_chans}-channel ({_mode(model_in_chans)}) input but the data "
                         f"({spec}) is {_mode(ds.channels)}, {ds.channels} channel(s); use a checkpoint made for "
                         f"{_mode(ds.channels)} images or convert the images")
