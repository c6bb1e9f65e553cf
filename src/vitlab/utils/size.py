"""One meaning of an image size: ``Size`` is always (height, width); ``SizeLike`` is what callers may pass."""
from __future__ import annotations

from typing import Sequence

Size = tuple[int, int]
SizeLike = int | Sequence[int]  # an int n means n x n


def to_2tuple(size: SizeLike, name: str = "size") -> Size:
    """``size`` as (height, width); ``name`` is the field the error message names."""
    if isinstance(size, int):
        size = (size, size)
    if len(size) != 2:
        raise ValueError(f"{name}: expected an int or (height, width), got {size!r}")
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"{name} must be positive, got {size!r}")
    return h, w
