"""What every data source offers the rest of vitlab, whether its images sit in memory or on disk.

A source knows its length, its labels (int64), its class names, the files it could not use and, where
it has them, a stable name per sample (the relative path of a file) that a held-out split can be saved
by. How sample i is read is the source's own business: an in-memory source hands out uint8 arrays, an
encoded one (image folder, tar shards, a Hugging Face table) hands out the encoded bytes, which the
per-sample pipeline decodes in DataLoader workers.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import ClassVar, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

# Recognised split names, for folders, shard directories and Hugging Face tables alike; the first found is used.
SPLIT_DIRS = {"train": ("train",), "test": ("test", "val", "valid", "validation")}


class Strings:
    """An immutable list of strings in two numpy arrays (utf-8 bytes and offsets).

    Why not a Python list: DataLoader workers are forked, and touching a Python object writes its
    reference count, so a list of a million path strings is copied page by page into every worker
    (copy-on-access). Two flat arrays are read without being written."""

    def __init__(self, items: Sequence[str] | None = None, *, data: np.ndarray | None = None,
                 offsets: np.ndarray | None = None) -> None:
        if data is None:
            encoded = [s.encode() for s in items or ()]
            offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
            np.cumsum([len(b) for b in encoded], out=offsets[1:])
            data = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
        self.data, self.offsets = data, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return self.data[self.offsets[i] : self.offsets[i + 1]].tobytes().decode()

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))

    def take(self, indices: np.ndarray) -> Strings:
        """The strings at `indices`, gathered as bytes (no Python string per item)."""
        idx = np.asarray(indices, dtype=np.int64)
        starts = self.offsets[idx]
        lengths = self.offsets[idx + 1] - starts
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        positions = np.arange(offsets[-1]) + np.repeat(starts - offsets[:-1], lengths)
        return Strings(data=self.data[positions], offsets=offsets)


def as_index(indices: Sequence[int] | Tensor | np.ndarray) -> Tensor:
    """Row indices (int64) from an index list or a boolean mask."""
    idx = torch.as_tensor(np.asarray(indices) if not isinstance(indices, Tensor) else indices)
    if idx.dtype == torch.bool:
        idx = idx.nonzero().flatten()
    return idx.to(torch.int64)


class Source:
    """Base of every source: labels (int64 tensor), class names, skipped files, and what the rest of vitlab
    reads of every source: ``channels``, ``image_size`` (the size all images share; None when each keeps its
    own), ``paths`` (a stable name per sample, by which a held-out split is saved; None: saved by row).
    A source is one of the two kinds below (InMemorySource, EncodedSource); ``in_memory`` says which."""

    in_memory: ClassVar[bool]
    labels: Tensor
    classes: list[str]
    skipped: list[tuple[str, str]]
    channels: int
    image_size: tuple[int, int] | None
    paths: Sequence[str] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()

    def subset(self, indices: Sequence[int] | Tensor | np.ndarray) -> Source:
        raise NotImplementedError

    def _check_labels(self) -> None:
        self.labels = self.labels.to(torch.int64)
        if self.labels.ndim != 1:
            raise ValueError(f"labels must be 1-D, got shape {tuple(self.labels.shape)}")
        self.classes = [str(c) for c in self.classes]
        if len(self.labels) and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.classes)):
            raise ValueError(
                f"labels span [{int(self.labels.min())}, {int(self.labels.max())}] but there are "
                f"{len(self.classes)} classes; pass the full class list"
            )


class InMemorySource(Source):
    """Decoded images held in memory, ``images`` uint8 (N, C, H, W): gathered on the device and augmented
    batched there (crop and flip included)."""

    in_memory: ClassVar[bool] = True
    images: Tensor

    @property
    def image_size(self) -> tuple[int, int]:  # type: ignore[override]
        return tuple(self.images.shape[-2:])  # type: ignore[return-value]

    @property
    def channels(self) -> int:  # type: ignore[override]
        return int(self.images.shape[1])


class EncodedSource(Source):
    """Encoded images (files, tar members, table cells), each keeping its own size: decoded, cropped and
    resized per sample in the pipeline's worker processes (vitlab.data.pipeline). ``channels`` is 1 when the
    images are grayscale, else 3."""

    in_memory: ClassVar[bool] = False
    image_size = None

    def read_bytes(self, i: int) -> bytes:
        """Sample i's encoded bytes; a ValueError naming it (``name(i)``) when it cannot be read."""
        raise NotImplementedError

    def name(self, i: int) -> str:
        """Sample i as messages and skipped-file lists show it (a path, shard:key, table[row])."""
        raise NotImplementedError


# ------------------------------------------------------------------------------------- unusable files
def describe_skipped(root: Path | str, skipped: list[tuple[str, str]], limit: int = 20) -> str:
    """The unusable files a source found under ``root``, one line each (the first ``limit``)."""
    lines = [f"{len(skipped)} file(s) in {root} could not be used:"]
    lines += [f"  {p}: {why}" for p, why in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"  ... and {len(skipped) - limit} more (see dataset.skipped)")
    return "\n".join(lines)


def report_or_raise(root: Path | str, skipped: list[tuple[str, str]], on_error: str, report: bool = True) -> None:
    """What every source does with the files it found unusable while opening: on_error="raise": a ValueError
    listing them; else they are printed (stderr) when ``report`` (callers that list them themselves, as
    `vitlab data` does, say False)."""
    if not skipped:
        return
    if on_error == "raise":
        raise ValueError(describe_skipped(root, skipped) + "\nfix or remove them, or skip them "
                         "(on_error='skip', --on-error skip, data.on_error=skip)")
    if report:
        print(describe_skipped(root, skipped) + "\n(skipped; on_error='raise', --on-error raise or "
              "data.on_error=raise stops instead)", file=sys.stderr)
