"""Make the model fit the user's data instead of converting the data to fit the model.

A folder of 32x32 RGB photos trained with the default 28x28 one-channel model would silently become
grey 28x28 images. For data sets given as a path (image folders, .npz, IDX/CIFAR folders) the input
channels and, unless the recipe sets them, the image size are taken from the data; an explicit model
setting that contradicts the data's channels is an error naming both. Named data sets (fashion_mnist,
cifar10, digits, ...) keep the recipe's model as it is: their recipes are written for them.
"""
from __future__ import annotations

from typing import Any

from ..data import DatasetSpec, Source
from ..models.registry import get_config


def _mode(c: int) -> str:
    return {1: "grayscale", 3: "RGB"}.get(c, f"{c}-channel")


def _registered_patch(name: str) -> int | None:
    return getattr(get_config(name), "patch_size", None)


def fit_model_options(spec: DatasetSpec, ds: Source, options: dict[str, Any], model_name: str | None,
                      size_key: str = "model.img_size") -> tuple[dict[str, Any], str | None]:
    """`options` (ViTConfig overrides from the recipe) completed from the data, and a line saying what was
    chosen (None for named data sets). `model_name` None: the architecture comes from a checkpoint, whose
    channel count is checked after loading (check_channels). `size_key`: the recipe key that set
    ``options["img_size"]``, named in that line."""
    if spec.named:
        return options, None
    out = dict(options)
    c, (h, w) = ds.channels, ds.image_size or (0, 0)
    if "in_chans" in out and out["in_chans"] != c:
        raise ValueError(f"model.in_chans={out['in_chans']} but the data ({spec}) is {_mode(c)}, {c} channel(s); "
                         f"remove model.in_chans to take it from the data, or convert the images")
    said = []
    if "in_chans" not in out:
        if model_name is None:
            said.append(f"in_chans from the checkpoint (the data is {_mode(c)})")
        else:
            out["in_chans"] = c
            said.append(f"in_chans={c} ({_mode(c)}, from the data)")
    if "img_size" not in out and ds.image_size is None:  # read lazily: images keep their own sizes
        said.append("img_size of the model (the images are cropped and resized to it; data.image_size sets another)")
    elif "img_size" not in out:
        patch = out.get("patch_size") or (_registered_patch(model_name) if model_name else None)
        if patch and (h % patch or w % patch):
            up = [-(-v // patch) * patch for v in (h, w)]
            raise ValueError(f"the images of {spec} are {h}x{w}, not a multiple of the patch size {patch}: set "
                             f"data.image_size (e.g. {max(up)}) to resize them, or model.img_size / model.patch_size")
        out["img_size"] = (h, w)
        said.append(f"img_size={h}x{w} (from the data)")
    else:
        mh, mw = (out["img_size"],) * 2 if isinstance(out["img_size"], int) else out["img_size"]
        said.append(f"img_size={mh}x{mw} ({size_key}" + (")" if (mh, mw) == (h, w) or ds.image_size is None
                                                             else f"; the {h}x{w} data is resized to it)"))
    return out, "model: " + ", ".join(said)


def check_channels(model_in_chans: int, ds: Source, spec: DatasetSpec, source: str) -> None:
    """An error naming both sides when a model (e.g. a pretrained checkpoint, `source`) expects another
    number of input channels than the data has; named data sets are converted as before."""
    if not spec.named and model_in_chans != ds.channels:
        raise ValueError(f"{source} expects {model_in_chans}-channel ({_mode(model_in_chans)}) input but the data "
                         f"({spec}) is {_mode(ds.channels)}, {ds.channels} channel(s); use a checkpoint made for "
                         f"{_mode(ds.channels)} images or convert the images")
