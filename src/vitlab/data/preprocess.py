"""The one test-time preprocessing definition: how an image of any size becomes the model's input size.

It is part of a model's metadata (``eval_resize``, ``eval_crop_pct``, ``eval_interpolation`` in ViTConfig
and ResNetConfig, saved in config.json and an ONNX export's properties), so that ``eval``, ``predict``,
``serve``, ``fewshot`` and ``analyze`` feed a model exactly what its reported evaluation fed it.

    resize="whole"    resize the whole image to img_size / crop_pct, aspect ratio not kept (crop_pct 1:
                      exactly img_size, the official ViT code's test preprocessing; below 1: timm's "squash")
    resize="shorter"  resize so that the image just covers img_size / crop_pct, aspect ratio kept (for a
                      square size: the shorter side to size / crop_pct), the convention of timm and big_vision
    then              centre-crop img_size

The arithmetic is timm's (torchvision's Resize and CenterCrop): the scaled size is floor(size / crop_pct)
(256 for 224 at crop_pct 0.875), the longer side int(long * scale), the crop offsets rounded. Two
implementations of the same definition: ``resize_pil`` for one image at a time (prediction, images read
from disk), ``resize_batch`` for uint8 batches already in memory. Both antialias a reduction the way PIL
does (the filter widened by the scale); ``resize_batch`` runs Pillow's two one-axis passes in its order,
each rounded to whole levels, and on the same image differs from ``resize_pil`` by at most 2 levels of
255 in under 1% of the values (fixed- vs floating-point filter weights; tests/data/test_preprocess.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..utils.eval_fields import INTERPOLATIONS, check_fields
from ..utils.size import Size, to_2tuple

PIL_FILTERS = {name: Image.Resampling[name.upper()] for name in INTERPOLATIONS}  # PIL codes 2, 3 (HF's "resample")


@dataclass(frozen=True)
class Preprocess:
    """The one test-time preprocessing definition; travels in the model's metadata.

    ``img_size``: the model's (height, width). ``resize``: "whole" or "shorter" (see the module doc).
    ``crop_pct``: share of the scaled image kept by the centre crop, in (0, 1]. ``interpolation``:
    "bilinear" or "bicubic" (PIL's filters, antialiased when reducing)."""

    img_size: tuple[int, int]
    resize: str = "whole"
    crop_pct: float = 1.0
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        object.__setattr__(self, "img_size", to_2tuple(self.img_size, "img_size"))
        check_fields("", self.resize, self.crop_pct, self.interpolation)
        object.__setattr__(self, "crop_pct", float(self.crop_pct))

    @classmethod
    def from_config(cls, cfg: Any) -> Preprocess:
        """The definition a model config carries (ViTConfig, ResNetConfig: img_size, eval_resize, eval_crop_pct,
        eval_interpolation)."""
        check_fields(f"{type(cfg).__name__}.eval_", cfg.eval_resize, cfg.eval_crop_pct, cfg.eval_interpolation)
        return cls(cfg.img_size, cfg.eval_resize, cfg.eval_crop_pct, cfg.eval_interpolation)

    @property
    def scaled_size(self) -> Size:
        """The size the centre crop is taken from: floor(img_size / crop_pct) (timm's int(size / crop_pct),
        without float error turning 256.0 into 255.99...)."""
        oh, ow = self.img_size
        return math.floor(oh / self.crop_pct + 1e-9), math.floor(ow / self.crop_pct + 1e-9)

    def _geometry(self, height: int, width: int) -> tuple[Size, Size]:
        """For an input of ``height`` x ``width``: the size it is resized to and the (top, left) of the crop,
        in torchvision's arithmetic (timm's): the other side int()-truncated, crop offsets rounded."""
        th, tw = self.scaled_size
        if self.resize == "whole":
            rh, rw = th, tw
        elif th * width >= tw * height:  # the height reaches its target last: it sets the scale
            rh, rw = th, max(tw, int(width * th / height))
        else:
            rh, rw = max(th, int(height * tw / width)), tw
        oh, ow = self.img_size
        return (rh, rw), (int(round((rh - oh) / 2.0)), int(round((rw - ow) / 2.0)))

    def crop_box(self, height: int, width: int) -> tuple[float, float, float, float]:
        """The part of a ``height`` x ``width`` image that the model sees, as PIL's box (left, top, right,
        bottom) in the image's pixels: where an attention map drawn over the original image belongs."""
        (rh, rw), (top, left) = self._geometry(height, width)
        oh, ow = self.img_size
        sy, sx = height / rh, width / rw
        return (left * sx, top * sy, (left + ow) * sx, (top + oh) * sy)

    def resize_pil(self, img: Image.Image) -> Image.Image:
        """An image of any size -> exactly img_size (PIL size (width, height) = (img_size[1], img_size[0])),
        in the same mode. Convert palette and 1-bit images first (``vitlab.data.image_to_array``)."""
        if img.mode in ("P", "PA", "1"):
            raise ValueError(f"a {img.mode!r} image cannot be resized with a {self.interpolation} filter (PIL would "
                             "silently use nearest); convert it first, e.g. with vitlab.data.image_to_array")
        (rh, rw), (top, left) = self._geometry(img.height, img.width)
        if (img.height, img.width) != (rh, rw):
            img = img.resize((rw, rh), PIL_FILTERS[self.interpolation])
        oh, ow = self.img_size
        return img if (rh, rw) == (oh, ow) else img.crop((left, top, left + ow, top + oh))

    def resize_batch(self, images: Tensor) -> Tensor:
        """uint8 (B, C, H, W) on any device -> float32 (B, C, h, w) of whole numbers in 0..255: what
        ``resize_pil`` gives for each image, computed batched (Pillow's two one-axis passes)."""
        if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
            got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"expected a uint8 image batch (B, C, H, W), got {got}")
        h, w = images.shape[-2:]
        (rh, rw), (top, left) = self._geometry(h, w)
        x = images.float()
        # One axis at a time, in Pillow's order (13.0): width first, except that a shrinking height goes first
        # when the width grows. Each pass rounds half up and clips to 0..255, as Pillow's 8-bit passes do.
        passes = [(h, rw), (rh, rw)] if not (rh < h and rw > w) else [(rh, w), (rh, rw)]
        for size in passes:
            if tuple(x.shape[-2:]) != size:
                x = F.interpolate(x, size=size, mode=self.interpolation, antialias=True, align_corners=False)
                x = x.add_(0.5).floor_().clamp_(0, 255)
        oh, ow = self.img_size
        return x[:, :, top : top + oh, left : left + ow]
