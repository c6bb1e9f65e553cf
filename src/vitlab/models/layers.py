"""Building blocks shared by the ViT, the hybrid embedding and the BiT ResNet."""
from __future__ import annotations

import math
from dataclasses import asdict, fields
from typing import Any, ClassVar

from torch import Tensor, nn

from ..errors import ConfigError


class ConfigDict:
    """JSON round trip for config dataclasses: tuples become lists, unknown keys are named, not ignored.
    ``architecture``: the tag config.json carries for this model family (None for the ViT, the default)."""

    architecture: ClassVar[str | None] = None

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} fields {unknown}; known fields: {sorted(known)}")
        return cls(**d)


def check_image(x: Tensor, in_chans: int) -> None:
    """Refuse anything but an NCHW batch with the model's channel count, before a conv says it obscurely."""
    if x.ndim != 4 or x.shape[1] != in_chans:
        raise ValueError(f"expected an NCHW image batch with {in_chans} channels, got shape {tuple(x.shape)}")


def lecun_normal_(w: Tensor) -> None:
    """Flax's default kernel init: truncated normal with variance 1/fan_in."""
    fan_in = w[0].numel()
    std = math.sqrt(1.0 / fan_in) / 0.87962566103423978  # std of a unit normal truncated to [-2, 2]
    nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std)
