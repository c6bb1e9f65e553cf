"""Data sources: one small module per kind (vitlab.data.spec parses the user's string and picks one).

    arrays.py   in memory: IDX (MNIST, Fashion-MNIST), CIFAR binary, arrays / .npz, digits, mnist5k
    folder.py   image folders: lazy (FolderSource) or decoded into memory
    images.py   reading one image file with Pillow
    shards.py   WebDataset tar shards (ShardSource: random access through a cached per-sample index)
    hf.py       Hugging Face ``datasets`` tables saved to disk, parquet/arrow directories (HFSource)

Every source is a vitlab.data.base.Source: length, labels, classes, skipped files, and either
``images`` (in memory) or ``read_bytes(i)`` (encoded, decoded per sample by vitlab.data.pipeline).
"""
from __future__ import annotations

from ...errors import NoTestSplitError
from ..base import Source
from .arrays import (DEBIAN_FASHION_MNIST, DIGIT_CLASSES, FASHION_MNIST_CLASSES, NAMED_DATASETS, ImageDataset,
                     load_arrays, load_cifar_binary, load_digits, load_idx, load_mnist5k, load_npz, read_idx,
                     search_dirs)
from .folder import FolderSource, load_image_folder, open_folder
from .hf import HFSource
from .images import (ImageTooLargeError, decode_image, find_images, image_extensions, image_to_array, load_image,
                     unusable_reason)
from .shards import ShardSource

__all__ = ["DEBIAN_FASHION_MNIST", "DIGIT_CLASSES", "FASHION_MNIST_CLASSES", "NAMED_DATASETS", "FolderSource",
           "HFSource", "ImageDataset", "ImageTooLargeError", "NoTestSplitError", "ShardSource", "Source",
           "decode_image", "describe_dataset", "find_images", "image_extensions", "image_to_array", "load_arrays",
           "load_cifar_binary", "load_digits", "load_idx", "load_image", "load_image_folder", "load_mnist5k",
           "load_npz", "open_folder", "read_idx", "search_dirs", "unusable_reason"]


def describe_dataset(ds: Source, name: str = "dataset") -> str:
    """A readable summary (size, pixel range, per-class counts, unusable files) for checking data before training."""
    n = len(ds)
    if ds.in_memory:
        _, c, h, w = ds.images.shape
        lines = [f"{name}: {n} images, {c}x{h}x{w} uint8, {ds.num_classes} classes"]
        if n:
            lines.append(f"pixel range [{int(ds.images.min())}, {int(ds.images.max())}], "
                         f"mean {ds.images.float().mean().item() / 255:.4f} (0-1 scale)")
    else:
        lines = [f"{name}: {n} images at their own sizes, read lazily from disk ({ds.channels} channel(s)), "
                 f"{ds.num_classes} classes"]
    width = max((len(cname) for cname in ds.classes), default=0)
    lines += [f"  {i:3d} {cname:{width}s} {cnt}" for i, (cname, cnt) in enumerate(zip(ds.classes, ds.class_counts()))]
    if ds.skipped:
        lines.append(f"{len(ds.skipped)} file(s) skipped:")
        lines += [f"  {p}: {why}" for p, why in ds.skipped]
    return "\n".join(lines)
