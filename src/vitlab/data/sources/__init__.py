"""Data sources: one small module per kind, and ``open_dataset``, the one entry point that picks one.

    arrays.py   in memory: IDX (MNIST, Fashion-MNIST), CIFAR binary, arrays / .npz, digits, mnist5k
    folder.py   image folders: lazy (FolderSource) or decoded into memory
    images.py   reading one image file with Pillow
    shards.py   WebDataset tar shards (ShardSource: random access through a cached per-sample index)
    hf.py       Hugging Face ``datasets`` tables saved to disk, parquet/arrow directories (HFSource)

Every source is a vitlab.data.base.Source: length, labels, classes, skipped files, and either
``images`` (in memory) or ``read_bytes(i)`` (encoded, decoded per sample by vitlab.data.pipeline).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np

from ...errors import NoTestSplitError
from ...utils.size import SizeLike, to_2tuple
from ..base import SPLIT_DIRS, Source
from .arrays import (DEBIAN_FASHION_MNIST, DIGIT_CLASSES, FASHION_MNIST_CLASSES, NAMED_DATASETS, ImageDataset,
                     _cifar_layout, _check_split, _find_idx, _has_files, _SUBDIRS, load_arrays, load_cifar_binary,
                     load_digits, load_idx, load_mnist5k, load_npz, named_not_found, read_idx, search_dirs)
from .folder import FolderSource, decide_in_memory, load_image_folder, open_folder_lazy, report_or_raise
from .hf import HFSource, canonical_hf_spec, has_hf_test_split, is_hf_spec, open_hf
from .images import (ImageTooLargeError, decode_image, find_images, image_extensions, image_to_array, load_image,
                     unusable_reason)
from .shards import ShardSource, is_shard_spec, open_shards, shard_split

PathLike = str | os.PathLike

__all__ = ["DEBIAN_FASHION_MNIST", "DIGIT_CLASSES", "FASHION_MNIST_CLASSES", "NAMED_DATASETS", "FolderSource",
           "HFSource", "ImageDataset", "ImageTooLargeError", "ShardSource", "Source", "canonical_spec", "decode_image",
           "describe_dataset", "find_images", "has_test_split", "image_extensions", "image_to_array", "load_arrays",
           "load_cifar_binary", "load_digits", "load_idx", "load_image", "load_image_folder", "load_mnist5k", "load_npz",
           "open_dataset", "open_dataset_path", "open_folder", "read_idx", "search_dirs", "unusable_reason"]


def open_dataset(
    spec: str,
    split: str = "train",
    data_dir: PathLike | None = None,
    size: SizeLike | None = None,
    on_error: Literal["skip", "raise"] = "skip",
    cache: PathLike | None = None,
    in_memory: bool | str = "auto",
    report: bool = True,
) -> Source:
    """One entry point for every source: a name (fashion_mnist, mnist, mnist5k, cifar10, cifar100, digits)
    or a path (folder of class folders, .npz, a folder with IDX or CIFAR .bin files, WebDataset tar shards
    (vitlab.data.sources.shards), a Hugging Face table (vitlab.data.sources.hf)).

    A folder with train/ and test/ (or val/, valid/, validation/) subfolders of class folders is read at
    `split`. A source without a test part (a flat class folder, an .npz without x_test/y_test, a folder
    with only train/) is all "train"; asking it for "test" raises NoTestSplitError instead of handing back
    the training images (see has_test_split and vitlab.data.splits for the held-out split training makes).
    `size`, `on_error`, `cache` and `in_memory` apply to image folders: read lazily (FolderSource) or
    decoded into memory (load_image_folder), as vitlab.data.sources.folder.decide_in_memory says. Shards
    and tables are always read lazily; `cache` says where a shard set's index is kept. Unusable files are
    printed (stderr) as they are found, unless not `report` (the caller lists `source.skipped` itself).
    """
    _check_split(split)
    key = spec.lower().replace("-", "_")
    if key in ("digits", "mnist5k"):
        return load_digits(split) if key == "digits" else load_mnist5k(split)
    if key in _SUBDIRS:
        looked = search_dirs(key, data_dir)
        for d in looked:
            if d.is_dir() and _has_files(d, key, split):
                if key in ("mnist", "fashion_mnist"):
                    return load_idx(d, split, kind=key)  # type: ignore[arg-type]
                return load_cifar_binary(d, split)
        raise named_not_found(key, split, looked)
    if not has_test_split(spec, data_dir) and split == "test":
        raise NoTestSplitError(
            f"{spec} has no test split (no x_test/y_test arrays, no test/ val/ valid/ validation/ subfolder or split); "
            "`vitlab train` holds out data.test_fraction of it and saves the list in RUN/split.json, so evaluate "
            "the run directory (`vitlab eval RUN`), or pass --split train"
        )
    if is_shard_spec(spec):
        return open_shards(spec, split, on_error, cache, report)
    if is_hf_spec(spec):
        return open_hf(spec, split, on_error, report)
    path = _existing_path(spec)
    if path.is_file():
        return load_npz(path, split)
    if _find_idx(path, split, "images") is not None:
        return load_idx(path, split)
    if _cifar_layout(path) is not None:
        return load_cifar_binary(path, split)
    return open_folder(open_dataset_path(spec, split, data_dir), size, on_error, cache, in_memory, report)[0]


def open_dataset_path(spec: str, split: str, data_dir: PathLike | None = None) -> Path | None:
    """The image folder `spec` reads at `split` (its train/ or test/ part, or itself), or None when `spec`
    is not an image folder (a named set, an .npz, IDX or CIFAR files, shards, a Hugging Face table)."""
    if spec.lower().replace("-", "_") in NAMED_DATASETS or is_shard_spec(spec) or is_hf_spec(spec):
        return None
    path = _existing_path(spec)
    if path.is_file() or _find_idx(path, "train", "images") is not None or _cifar_layout(path) is not None:
        return None
    return _split_folder(path, split) or path


def open_folder(root: Path, size: SizeLike | None, on_error: Literal["skip", "raise"], cache: PathLike | None,
                in_memory: bool | str, report: bool = True) -> tuple[Source, str, FolderSource]:
    """An image folder, lazy or decoded into memory, the line saying which and why, and the folder's index
    (the lazy source itself, or the same files read lazily beside the decoded ones)."""
    hw = None if size is None else to_2tuple(size)
    lazy = open_folder_lazy(root, on_error, cache=cache, report=False)
    keep, why = decide_in_memory(in_memory, len(lazy), hw)
    if keep:  # decoding finds the files a scan cannot (corrupt, truncated) and reports them all together
        return load_image_folder(root, hw, on_error, cache=cache, report=report), why, lazy
    report_or_raise(root, lazy.skipped, on_error, report)
    return lazy, why, lazy


def _existing_path(spec: str) -> Path:
    path = Path(spec).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"dataset {spec!r} is neither a known name ({', '.join(NAMED_DATASETS)}) nor an existing path"
        )
    if path.is_file() and path.suffix.lower() != ".npz":
        raise ValueError(f"{path}: a dataset file must be a .npz; use a folder for images, IDX or CIFAR files")
    return path


def _split_folder(path: Path, split: str) -> Path | None:
    """root/train or root/test (else val/, valid/, validation/) when the folder is split that way."""
    return next((path / d for d in SPLIT_DIRS[split] if (path / d).is_dir()), None)


def has_test_split(spec: str, data_dir: PathLike | None = None) -> bool:
    """Whether a source comes with its own test images: named datasets, IDX with t10k files, CIFAR with
    a test batch, .npz with x_test/images_test, folders with test/ (or val/, valid/, validation/)."""
    key = spec.lower().replace("-", "_")
    if key in NAMED_DATASETS:
        return True
    if is_shard_spec(spec):
        return shard_split(spec, "test") is not None
    if is_hf_spec(spec):
        return has_hf_test_split(spec)
    path = _existing_path(spec)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                return any(k in z.files for k in ("x_test", "images_test"))
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read {path} as .npz: {e}") from e
    if _find_idx(path, "train", "images") is not None:
        return _find_idx(path, "test", "images") is not None
    found = _cifar_layout(path)
    if found is not None:
        d, kind = found
        return (d / ("test_batch.bin" if kind == "cifar10" else "test.bin")).is_file()
    return _split_folder(path, "test") is not None


def canonical_spec(spec: str) -> str:
    """`spec` as a run records it (RUN/split.json, so `vitlab eval RUN` finds it from any directory): names
    as given, paths and shard patterns absolute, Hugging Face specs with an absolute directory."""
    if spec.lower().replace("-", "_") in NAMED_DATASETS:
        return spec
    if spec.startswith("hf:"):
        return canonical_hf_spec(spec)
    return str(Path(spec).expanduser().resolve())


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
