"""``vitlab data pack``: any source written as WebDataset tar shards, for reading at scale.

Each sample becomes three tar members sharing its key: the image (``KEY.jpg``, ``.png``, ``.webp``, ...:
the source's own encoded bytes, never re-encoded; in-memory arrays, which have none, are encoded as PNG),
``KEY.cls`` (the label, decimal) and ``KEY.json`` (label, class name, the sample's name in the source).
Keys are stable: the source's file path without its extension (a folder's ``class0/img_001``, a shard
set's own keys), or the row number for arrays and Hugging Face tables; a dot in a key's last path
component is written ``%2E`` (WebDataset cuts the key at the first dot there); two samples that would get
one key stop the pack with both named. Samples go into the shards in an order shuffled by ``seed``
(each shard then holds a mix of classes, so a reader's shuffle buffer sees them; ``seed=None`` keeps the
source's order). ``dataset.json`` beside the shards is the index: the class names, and per shard its file,
sample count and bytes. Members carry fixed metadata (mtime 0, uid 0), so packing the same source
twice writes identical bytes. The result is read by vitlab (vitlab.data.sources.shards) and by the
webdataset library's own ``WebDataset(...)``.
"""
from __future__ import annotations

import io
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tqdm.auto import tqdm

from ..utils.io import atomic_write
from .base import Source
from .sources.images import UNREADABLE, image_extensions, unreadable

PathLike = str | os.PathLike
INDEX_FILE = "dataset.json"
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20,
          "gib": 2**30, "tib": 2**40}
_FIELD = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "TIFF": "tiff"}  # Pillow format -> WebDataset field


@dataclass(frozen=True)
class ShardSize:
    """When a shard is full: after `samples` samples, or before it would pass `bytes` bytes."""

    samples: int | None = None
    bytes: int | None = None


def parse_shard_size(text: str | int) -> ShardSize:
    """``1000`` (samples a shard) or a size with a unit (``500MB``, ``1GiB``: bytes a shard at most)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in _UNITS or float(m.group(1)) <= 0:
        raise ValueError(f"--shard-size {text!r}: give samples a shard (e.g. 1000) or bytes with a unit "
                         f"(e.g. 500MB; units {', '.join(u for u in _UNITS if u)})")
    if not m.group(2):
        if "." in m.group(1):
            raise ValueError(f"--shard-size {text!r}: a sample count is a whole number")
        return ShardSize(samples=int(m.group(1)))
    return ShardSize(bytes=int(float(m.group(1)) * _UNITS[unit]))


def sample_key(name: str) -> str:
    """A WebDataset key from a sample's name: its image extension dropped, a dot left in the last path
    component written %2E (WebDataset cuts the key there); a name that is a key already stays as it is."""
    stem, dot, ext = name.rpartition(".")
    if dot and "/" not in ext and f".{ext.lower()}" in image_extensions():
        name = stem
    head, slash, last = name.rpartition("/")
    return head + slash + last.replace(".", "%2E")


def encoded(source: Source, i: int) -> tuple[bytes, str]:
    """Sample i as (encoded bytes, WebDataset field): the source's bytes as they are, arrays as PNG."""
    if source.in_memory:
        arr = source.images[i].permute(1, 2, 0).numpy()
        buf = io.BytesIO()
        Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr).save(buf, format="PNG")
        return buf.getvalue(), "png"
    data = source.read_bytes(i)
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format or ""
    except UNREADABLE as e:
        raise unreadable(source.name(i), e) from e
    return data, _FIELD.get(fmt, fmt.lower())


def _names(source: Source) -> list[str]:
    """Each sample's stable name: its path or key, else its row in the table it came from (HFSource.rows:
    rows without a label are not in the source), else its index."""
    paths = getattr(source, "paths", None)
    if paths is not None:
        return list(paths)
    rows = getattr(source, "rows", range(len(source)))
    return [f"{int(r):08d}" for r in rows]


class _ShardWriter:
    """Writes numbered shards into `out`, each through a temporary name (a killed pack leaves no torn shard)."""

    def __init__(self, out: Path, size: ShardSize) -> None:
        self.out, self.size, self.shards = out, size, []
        self.tar: tarfile.TarFile | None = None
        self.count = 0

    def add(self, members: list[tuple[str, bytes]]) -> None:
        need = sum(512 * (1 + (len(n) > 99) * 2) + -(-len(b) // 512) * 512 for n, b in members)
        if self.tar is not None and (
                (self.size.samples and self.count >= self.size.samples)
                or (self.size.bytes and -(-(self.tar.offset + need + 1024) // 10240) * 10240 > self.size.bytes)):
            self.close()
        if self.tar is None:
            self.tar = tarfile.open(self._tmp(len(self.shards)), "w", format=tarfile.PAX_FORMAT)
            self.count = 0
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            self.tar.addfile(info, io.BytesIO(data))
        self.count += 1

    def _tmp(self, i: int) -> Path:
        return self.out / f".shard-{i:06d}.tar.tmp"

    def close(self) -> None:
        if self.tar is None:
            return
        self.tar.close()
        i = len(self.shards)
        final = self.out / f"shard-{i:06d}.tar"
        os.replace(self._tmp(i), final)
        self.shards.append({"file": final.name, "samples": self.count, "bytes": final.stat().st_size})
        self.tar = None


def pack(source: Source, out: PathLike, shard_size: ShardSize | str | int, seed: int | None = 0,
         described_as: str = "", progress: bool = True) -> dict[str, Any]:
    """Write `source` as tar shards into `out` (created; must hold no shards yet); returns the index that
    is written to OUT/dataset.json. Unreadable samples are left out and listed in the index's "skipped"."""
    size = shard_size if isinstance(shard_size, ShardSize) else parse_shard_size(shard_size)
    out = Path(out)
    if out.is_dir() and (any(out.glob("*.tar")) or (out / INDEX_FILE).exists()):
        raise ValueError(f"{out} already holds shards or a {INDEX_FILE}; pack into an empty or new directory")
    out.mkdir(parents=True, exist_ok=True)
    names = _names(source)
    keys = [sample_key(n) for n in names]
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        if k in first:
            raise ValueError(f"{names[first[k]]!r} and {names[i]!r} get the same key {k!r}; rename one of them")
        first[k] = i
    order = range(len(source)) if seed is None else torch.randperm(
        len(source), generator=torch.Generator().manual_seed(seed)).tolist()
    writer, skipped = _ShardWriter(out, size), []
    for i in tqdm(order, desc=f"packing into {out}", unit="img", disable=not progress or len(source) < 500):
        try:
            data, fld = encoded(source, i)
        except ValueError as e:
            skipped.append([source.name(i) if not source.in_memory else names[i], str(e)])
            continue
        label = int(source.labels[i])
        meta = {"label": label, "class_name": source.classes[label], "source_name": names[i]}
        writer.add([(f"{keys[i]}.{fld}", data), (f"{keys[i]}.cls", str(label).encode()),
                    (f"{keys[i]}.json", json.dumps(meta).encode())])
    writer.close()
    if not writer.shards:
        raise ValueError(f"nothing to pack: no readable sample in {described_as or source!r}")
    index = {"format": "webdataset", "written_by": "vitlab data pack", "source": described_as,
             "classes": list(source.classes), "samples": sum(s["samples"] for s in writer.shards),
             "shards": writer.shards, "order": "source order" if seed is None else f"shuffled, seed {seed}",
             "skipped": skipped}
    atomic_write(out / INDEX_FILE, lambda tmp: tmp.write_text(json.dumps(index, indent=1) + "\n"))
    return index
