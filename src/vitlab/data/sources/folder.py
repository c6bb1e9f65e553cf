"""Image folders: one subfolder per class (sorted names = label order), scanned once, then read either
lazily (each file decoded when a worker needs it: any number of images, at their own size) or decoded
whole into memory at one size (small folders, where that is faster and fits).

``data.in_memory`` picks: ``false`` always lazy, ``true`` always decoded, ``auto`` decoded when the
decoded images (N x 3 x H x W bytes at the training size) take at most IN_MEMORY_SHARE of this machine's
memory, split between the processes on it. The file list (the index) is cached like the decoded images
(``data.cache``), keyed by the modification times of the folder's directories, so a folder of a million
files is listed once.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm.auto import tqdm

from ...utils.size import SizeLike, to_2tuple
from ..base import EncodedSource, Source, Strings, as_index, describe_skipped, report_or_raise
from .arrays import ImageDataset
from .cached import read_cached, write_cached
from .images import cannot_read, guess_channels, image_extensions, image_to_array, load_image, unusable_reason

PathLike = str | os.PathLike
IN_MEMORY_SHARE = 0.10  # data.in_memory=auto: decoded images may take this share of the machine's memory


def _scan_folder(root: Path) -> tuple[list[str], list[tuple[Path, int]], list[tuple[str, str]]]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(
            f"{root} has no class subfolders; an image folder dataset is laid out as {root}/<class name>/<image file>"
        )
    files, skipped = [], []
    extensions = image_extensions()
    for p in sorted(root.iterdir()):
        if p.is_file() and not p.name.startswith("."):
            skipped.append((str(p), "not inside a class folder"))
    def unreadable_dir(e: OSError) -> None:
        skipped.append((str(e.filename), f"cannot list the folder ({e.strerror or e})"))

    for label, name in enumerate(classes):
        for dirpath, dirnames, filenames in os.walk(root / name, onerror=unreadable_dir):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fn in sorted(filenames):
                p = Path(dirpath) / fn
                if fn.startswith("."):
                    continue  # .DS_Store, ._resource forks, editor swap files
                if p.suffix.lower() not in extensions:
                    skipped.append((str(p), f"not an image file extension Pillow knows ({p.suffix or 'none'})"))
                elif (why := unusable_reason(p)) is not None:
                    skipped.append((str(p), why))
                else:
                    files.append((p, label))
    return classes, files, skipped


def _fingerprint(root: Path, classes: list[str], files: list[tuple[Path, int]], size, channels,
                 skipped: list[tuple[str, str]]) -> str:
    h = hashlib.sha256(json.dumps([str(root.resolve()), classes, size, channels, skipped]).encode())
    for p, label in files:
        st = p.stat()
        h.update(f"{p.relative_to(root)}|{label}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def default_cache_path(root: PathLike) -> Path:
    """``cache="auto"``: one decode cache per folder under $XDG_CACHE_HOME/vitlab (default ~/.cache/vitlab),
    outside the user's data; it is rebuilt whenever a file, the size or the channel count changes."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vitlab" / "folders"
    key = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:16]
    return base / f"{Path(root).name}-{key}.npz"


def _read_cache(path: Path, fingerprint: str) -> ImageDataset | None:
    """The cached dataset if `path` holds one made from exactly these files and options, else None
    (an unreadable cache is rebuilt, with a note, rather than being fatal)."""
    z = read_cached(path, fingerprint, "cache")
    if z is None:
        return None
    skipped = [(str(a), str(b)) for a, b in z["skipped"].tolist()]
    return ImageDataset(torch.from_numpy(z["images"]), torch.from_numpy(z["labels"]), z["classes"].tolist(),
                        skipped, paths=z["paths"].tolist())


def load_image_folder(
    root: PathLike,
    size: SizeLike | None = None,
    on_error: Literal["skip", "raise"] = "skip",
    channels: int | None = None,
    cache: PathLike | Literal["auto"] | None = None,
    progress: bool = True,
    report: bool = True,
) -> ImageDataset:
    """One subfolder per class (sorted names = label order), decoded once into uint8 memory.

    Every image is resized (PIL bicubic, aspect ratio not kept) to `size` (int or (h, w)); with size=None
    the first readable image's size is used for all. `channels` None gives 1 channel when every image is
    grayscale, else 3. Unusable files (corrupt, truncated, empty, not an image, wrong extension) are listed
    in `dataset.skipped` and printed (unless not `report`); with on_error="raise" a ValueError lists them all
    instead.
    `cache` (a .npz path, or "auto" for default_cache_path(root)) stores the decoded arrays and is reused
    while no file's size/mtime changed. Dangling symlinks, unreadable files and decompression bombs are
    listed like any other unusable file; one bad file never stops the rest unless on_error="raise".
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    hw = None if size is None else to_2tuple(size)
    classes, files, skipped = _scan_folder(root)
    fp = _fingerprint(root, classes, files, hw, channels, skipped)
    if cache == "auto":
        cache = default_cache_path(root)
    cached = _read_cache(Path(cache), fp) if cache is not None else None
    if cached is not None:
        report_or_raise(root, cached.skipped, on_error, report)
        return cached

    def decode(p: Path) -> np.ndarray | str:
        try:
            arr = image_to_array(load_image(p), 1 if channels == 1 else None)
        except (ValueError, FileNotFoundError) as e:
            return str(e)
        if hw is not None and arr.shape[:2] != hw:
            arr = np.asarray(Image.fromarray(arr).resize((hw[1], hw[0]), Image.Resampling.BICUBIC))
        return arr

    if hw is None:  # the first readable image fixes the size for all
        hw = next((r.shape[:2] for r in map(decode, (p for p, _ in files)) if not isinstance(r, str)), None)
    arrays, labels, paths = [], [], []
    # PIL decodes and resizes without the GIL, so threads overlap the work of several files.
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        results = pool.map(decode, (p for p, _ in files))
        bar = tqdm(zip(files, results), total=len(files), desc=f"decoding {root.name}", unit="img",
                   disable=not progress or len(files) < 500)
        for (p, label), r in bar:
            if isinstance(r, str):
                skipped.append((str(p), r))
            else:
                arrays.append(r)
                labels.append(label)
                paths.append(p.relative_to(root).as_posix())
    if not arrays:
        raise ValueError(f"no readable images under {root}" + ("\n" + describe_skipped(root, skipped) if skipped else ""))
    report_or_raise(root, skipped, on_error, report)
    out_c = channels or (3 if any(a.ndim == 3 for a in arrays) else 1)
    images = np.stack([a[..., None].repeat(out_c, -1) if a.ndim == 2 else a for a in arrays]).transpose(0, 3, 1, 2)
    ds = ImageDataset(torch.from_numpy(np.ascontiguousarray(images)), torch.tensor(labels, dtype=torch.int64),
                      classes, skipped, paths=paths)
    empty = [c for c, n in zip(classes, ds.class_counts()) if n == 0]
    if empty:
        print(f"warning: class folder(s) without readable images in {root}: {', '.join(empty)}", file=sys.stderr)
    if cache is not None:
        arrays = dict(images=ds.images.numpy(), labels=ds.labels.numpy(), classes=np.array(classes),
                      skipped=np.array(skipped, dtype=str).reshape(-1, 2), paths=np.array(paths, dtype=str))
        write_cached(Path(cache), arrays, fp)
    return ds


# ------------------------------------------------------------------------------------------- lazy folders
class FolderSource(EncodedSource):
    """An image folder read lazily: paths and labels in memory (compact arrays), pixels on disk.

    ``read_bytes(i)`` returns the file's encoded bytes; decoding, cropping and resizing happen per sample
    in the pipeline's worker processes (vitlab.data.pipeline). ``channels`` is 1 when the sampled headers
    are all grayscale, else 3."""

    def __init__(self, root: PathLike, paths: Strings, labels: Tensor, classes: Sequence[str],
                 skipped: list[tuple[str, str]], channels: int) -> None:
        self.root, self.paths, self.labels = Path(root), paths, labels
        self.classes, self.skipped, self.channels = list(classes), list(skipped), int(channels)
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths for {len(labels)} labels")
        self._check_labels()

    def name(self, i: int) -> str:
        return str(self.root / self.paths[i])

    def read_bytes(self, i: int) -> bytes:
        """The encoded file; OSError (deleted, unreadable) and empty files raise ValueError naming it."""
        path = self.root / self.paths[i]
        try:
            data = path.read_bytes()
        except OSError as e:
            raise cannot_read(path, str(e.strerror or e)) from e
        if not data:
            raise cannot_read(path, "the file is empty")
        return data

    def subset(self, indices: Sequence[int] | Tensor | np.ndarray) -> FolderSource:
        idx = as_index(indices)
        return FolderSource(self.root, self.paths.take(idx.numpy()), self.labels[idx], self.classes, [], self.channels)

    def __repr__(self) -> str:
        return f"FolderSource({len(self)} images in {self.root}, {self.num_classes} classes, read lazily)"


def _tree_key(root: Path) -> str:
    """A hash of every directory's path and modification time: adding, removing or renaming a file changes
    its directory's mtime, so the key changes exactly when the list of files does (no per-file stat)."""
    h = hashlib.sha256(str(root.resolve()).encode())
    for dirpath, dirnames, _ in os.walk(root):
        dirnames.sort()
        h.update(f"{os.path.relpath(dirpath, root)}|{os.stat(dirpath).st_mtime_ns}\n".encode())
    return h.hexdigest()


def default_index_path(root: PathLike) -> Path:
    """Where ``cache="auto"`` keeps a folder's index (beside its decoded-image cache)."""
    return _index_path(default_cache_path(root))


def _index_path(cache: Path) -> Path:
    """The index file beside a decoded-image cache file (``x.npz`` -> ``x.index.npz``)."""
    return cache.with_name(cache.stem + ".index.npz")


def open_folder_lazy(root: PathLike, on_error: Literal["skip", "raise"] = "skip", channels: int | None = None,
                     cache: PathLike | Literal["auto"] | None = None, report: bool = True) -> FolderSource:
    """The folder's index (file list, labels, classes, unusable files), from `cache` when the folder's
    directories are unchanged, else scanned (and saved there). `report`: list the unusable files (or raise,
    with on_error="raise") now."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    index = None if cache is None else default_index_path(root) if cache == "auto" else _index_path(Path(cache))
    key = _tree_key(root)
    src = _read_index(index, key, root) if index is not None else None
    if src is None:
        classes, files, skipped = _scan_folder(root)
        if not files:
            raise ValueError(f"no readable images under {root}" + ("\n" + describe_skipped(root, skipped) if skipped else ""))
        paths = Strings([p.relative_to(root).as_posix() for p, _ in files])
        labels = torch.tensor([label for _, label in files], dtype=torch.int64)
        found = channels or guess_channels(lambda i: root / paths[i], len(paths))
        src = FolderSource(root, paths, labels, classes, skipped, found)
        if index is not None:
            arrays = dict(data=paths.data, offsets=paths.offsets, labels=labels.numpy(), classes=np.array(classes),
                          skipped=np.array(skipped, dtype=str).reshape(-1, 2), channels=np.array(src.channels))
            write_cached(index, arrays, key)
    if channels is not None:
        src.channels = channels
    if report:
        report_or_raise(root, src.skipped, on_error)
    return src


def _read_index(path: Path, key: str, root: Path) -> FolderSource | None:
    z = read_cached(path, key, "folder index")
    if z is None:
        return None
    skipped = [(str(a), str(b)) for a, b in z["skipped"].tolist()]
    return FolderSource(root, Strings(data=z["data"], offsets=z["offsets"]), torch.from_numpy(z["labels"]),
                        z["classes"].tolist(), skipped, int(z["channels"]))


def physical_memory() -> int:
    """Bytes of RAM on this machine."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def decide_in_memory(setting: bool | str, n_images: int, size: tuple[int, int] | None) -> tuple[bool, str]:
    """Whether an image folder of `n_images` is decoded into memory at `size` (None: the first image's),
    and the line that says why (the run's first lines show it)."""
    if setting is True or setting is False:
        return setting, f"data.in_memory={str(setting).lower()}"
    if size is None:
        return True, "data.in_memory=auto: no training size set (data.image_size / model.img_size), so every image " \
                     "is decoded at the first image's size"
    need = n_images * 3 * size[0] * size[1]
    procs = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    budget = int(IN_MEMORY_SHARE * physical_memory()) // procs
    fits = need <= budget
    return fits, (f"data.in_memory=auto: {n_images} images x 3x{size[0]}x{size[1]} bytes = {need / 1e9:.2f} GB decoded "
                  f"{'<=' if fits else '>'} {budget / 1e9:.2f} GB ({IN_MEMORY_SHARE:.0%} of {physical_memory() / 2**30:.0f} GiB "
                  f"RAM{f' / {procs} processes' if procs > 1 else ''}): "
                  f"{'decoded into memory' if fits else 'read lazily from disk by worker processes'}")


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
