"""WebDataset tar shards as a source: the samples of many .tar files, each readable on its own.

``data.dataset`` names shards in one of three forms:

    DIR                          a directory of .tar shards. With train/ and val/ (test/, valid/, validation/)
                                 subdirectories of shards, or shard names holding the word train and one of
                                 val / valid / validation / test (``imagenet-train-0001.tar``,
                                 ``imagenet-validation-01.tar``), it has both splits, as a split folder does;
                                 otherwise all its shards are the training split
    DIR/shard-{000000..000255}.tar   a brace pattern (numeric ranges keep their zero padding; ``{a,b}``
                                 lists; ``*`` globs too): one split, "train"
    FILE.tar                     one shard

Shards are plain (uncompressed) tar files: a compressed one cannot be read at an offset, so ``.tar.gz`` files
are not picked up. Samples are stored as WebDataset stores them: a sample's members are consecutive and share its key (the
member name up to the first dot of its last path component, ``__key__``); the member named by an image
extension (``jpg``, ``jpeg``, ``png``, ``webp`` or any other one Pillow opens) holds the encoded image,
``cls`` the label as a decimal integer and an optional ``json`` the class name (``class_name`` or
``class``). Class names come from the index beside the shards (in their directory or the one above):
``dataset.json`` (its ``classes``, as ``vitlab data pack`` writes it) or ``classes.txt`` (one name a line),
else from the samples' json, else the label numbers.

Why Python's tarfile reads the shards and not the webdataset library's reader: webdataset reads a shard as
one stream from its start and keeps no offsets, so sample i could only be reached by reading every sample
before it. tarfile reads the headers alone (it seeks over the data), which gives each sample's (shard,
byte offset, size) once; ``read_bytes(i)`` is then one ``pread``, for any sample in any order. That is
what the exact machinery needs: step-indexed micro-batches, a mid-epoch resume that reads no skipped
sample, held-out splits by sample key (``paths``), evaluation in chunks. The shards stay plain WebDataset
shards: the tests read what ``vitlab data pack`` writes with ``webdataset.WebDataset`` and read shards that
``webdataset.TarWriter`` wrote. Nothing in a shard is unpickled or run.

The per-sample index is built once (headers read shard by shard, in threads; processes starting together
wait on a lock file for the one building it) and cached under $XDG_CACHE_HOME/vitlab/shards (default
~/.cache/vitlab; beside ``data.cache`` when that is a path), keyed by the shards' paths, sizes and
modification times: a changed, added or removed shard builds it again.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import tarfile
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ...errors import NoTestSplitError
from ..base import SPLIT_DIRS, EncodedSource, Strings, as_index, report_or_raise
from .cached import read_cached, write_cached
from .images import cannot_read, guess_channels, image_extensions

PathLike = str | os.PathLike
INDEX_FILES = ("dataset.json", "classes.txt")  # class names beside the shards, in this order of preference
INDEX_VERSION = 1  # bump when the cached index's layout changes
OPEN_SHARDS = 16  # file descriptors a process keeps open (least recently used closed first)
_JSON_NAME_KEYS = ("class_name", "class")


# ------------------------------------------------------------------------------------------- which files
def is_shard_spec(spec: str) -> bool:
    """Whether `spec` names tar shards: a .tar file or pattern, or a directory holding .tar files
    (directly or in a train/ or test/ ... subdirectory)."""
    if spec.endswith(".tar"):
        return True
    path = Path(spec).expanduser()
    return path.is_dir() and (bool(_tars(path)) or any(_tars(path / d) for ds in SPLIT_DIRS.values() for d in ds))


def _tars(d: Path) -> list[Path]:
    if not d.is_dir():
        return []
    return sorted(f for f in d.iterdir() if f.suffix == ".tar" and not f.name.startswith(".") and f.is_file())


def _words(name: str) -> set[str]:
    return set(re.split(r"[-_.]", name.lower()))


def expand_braces(pattern: str) -> list[str]:
    """``a{000..002}b{x,y}`` -> a000bx, a000by, a001bx, ... in that order (WebDataset's shard-list notation)."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if m is None:
        return [pattern]
    body = m.group(1)
    if r := re.fullmatch(r"(\d+)\.\.(\d+)", body):
        lo, hi = int(r.group(1)), int(r.group(2))
        items = [f"{i:0{len(r.group(1))}d}" for i in range(lo, hi + 1)]
    elif "," in body:
        items = body.split(",")
    else:
        raise ValueError(f"cannot expand {{{body}}} in {pattern!r}: write a range {{000000..000255}} or a list {{a,b}}")
    return [x for item in items for x in expand_braces(pattern[: m.start()] + item + pattern[m.end() :])]


def shard_split(spec: str, split: str) -> list[Path] | None:
    """The shard files of `split` ("train" or "test"), or None when the shard set has no such split."""
    path = Path(spec).expanduser()
    if path.is_dir():
        for d in SPLIT_DIRS[split]:
            if tars := _tars(path / d):
                return tars
        if any(_tars(path / d) for ds in SPLIT_DIRS.values() for d in ds):
            return None  # split subdirectories, but not this one
        tars = _tars(path)
        named = {s: [f for f in tars if _words(f.stem) & set(names)] for s, names in SPLIT_DIRS.items()}
        if named["train"] and named["test"]:
            return named[split]
        return tars if split == "train" else None
    files: list[Path] = []
    for pat in expand_braces(str(path)):
        found = sorted(glob(pat)) if any(c in pat for c in "*?[") else [pat] if Path(pat).is_file() else []
        if not found:
            raise FileNotFoundError(f"no shard file matches {pat} (from data set {spec!r}); check the path and the "
                                    "range, e.g. DIR/shard-{000000..000255}.tar")
        files += [Path(f) for f in found]
    return files if split == "train" else None


def class_index(shard_dir: Path) -> tuple[list[str], Path] | None:
    """Class names from dataset.json or classes.txt in `shard_dir` or its parent, and the file they came from."""
    for d in (shard_dir, shard_dir.parent):
        for name in INDEX_FILES:
            f = d / name
            if not f.is_file():
                continue
            try:
                if name == "dataset.json":
                    names = json.loads(f.read_text()).get("classes")
                    if names is None:
                        continue
                else:
                    names = [line.strip() for line in f.read_text().splitlines() if line.strip()]
            except (OSError, ValueError, AttributeError) as e:
                raise ValueError(f"cannot read class names from {f}: {e}") from e
            return [str(n) for n in names], f
    return None


# ----------------------------------------------------------------------------------------- the index
@dataclass
class _ShardScan:
    """What one shard holds: per sample its key, image offset/size and label; the class names its json
    members give; the samples it could not use."""

    keys: list[str] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def split_member(name: str) -> tuple[str, str]:
    """(key, field) of a tar member as WebDataset splits it: at the first dot of the last path component."""
    head, _, last = name.rpartition("/")
    stem, dot, ext = last.partition(".")
    return (f"{head}/{stem}" if head else stem), ext.lower() if dot else ""


def _scan_shard(path: Path, image_fields: frozenset[str]) -> _ShardScan:
    out = _ShardScan()
    sample: dict[str, Any] = {}

    def flush() -> None:
        if not sample:
            return
        key, where = sample["key"], f"{path}:{sample['key']}"
        if "image" not in sample:
            out.skipped.append((where, "no image member (jpg, png, webp, ...)"))
        elif "label" not in sample:
            out.skipped.append((where, sample.get("bad_label", "no cls member (the label)")))
        else:
            out.keys.append(key)
            out.offsets.append(sample["image"][0])
            out.sizes.append(sample["image"][1])
            out.labels.append(sample["label"])
            if "name" in sample:
                out.names.setdefault(sample["label"], sample["name"])
        sample.clear()

    try:
        with tarfile.open(path, "r:") as tf:
            for m in tf:
                if not m.isfile():
                    continue
                key, fld = split_member(m.name)
                if sample and key != sample["key"]:
                    flush()
                sample["key"] = key
                if fld.rpartition(".")[2] in image_fields and "image" not in sample:
                    sample["image"] = (m.offset_data, m.size)
                elif fld == "cls":
                    text = tf.extractfile(m).read().strip()  # type: ignore[union-attr]
                    try:
                        label = int(text)
                    except ValueError:
                        label = -1
                    if label >= 0:
                        sample["label"] = label
                    else:
                        sample["bad_label"] = f"cls is not a label (a whole number >= 0): {text[:20]!r}"
                elif fld == "json":
                    try:
                        meta = json.loads(tf.extractfile(m).read())  # type: ignore[union-attr]
                    except ValueError:
                        continue
                    names = [meta.get(k) for k in _JSON_NAME_KEYS] if isinstance(meta, dict) else []
                    name = next((n for n in names if isinstance(n, str)), None)
                    if name is not None:
                        sample["name"] = name
            flush()
    except (OSError, tarfile.TarError, EOFError) as e:
        flush()
        out.skipped.append((str(path), f"unreadable tar after {len(out.keys)} samples ({e}); the rest of this shard "
                                       "is left out"))
    return out


def _index_key(files: Sequence[Path]) -> str:
    h = hashlib.sha256(f"vitlab shard index {INDEX_VERSION}\n".encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def default_index_dir() -> Path:
    """Where shard indexes are cached by default: outside the data, which may sit on a read-only mount."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vitlab" / "shards"


def index_path(files: Sequence[Path], key: str, cache: PathLike | None) -> Path:
    """Where the index of `files` is cached: under default_index_dir(), or beside `cache` (a data.cache path)."""
    if cache is None or cache == "auto":
        return default_index_dir() / f"{files[0].parent.name or 'shards'}-{key[:16]}.npz"
    cache = Path(cache)
    return cache.with_name(f"{cache.stem}.shards-{key[:16]}.npz")


# ------------------------------------------------------------------------------------------- the source
class ShardSource(EncodedSource):
    """Samples of WebDataset tar shards, read by random access: per sample the shard, byte offset and
    size of its image (``shard``, ``offset``, ``size``), its key (``paths``, stable over re-indexing, by
    which held-out splits are saved), label; ``read_bytes(i)`` is one pread. ``shard`` also lets the
    shard-sequential schedule (vitlab.data.shard_order) give each reader whole stretches of shards."""

    def __init__(self, files: Sequence[PathLike], shard: np.ndarray, offset: np.ndarray, size: np.ndarray,
                 keys: Strings, labels: Tensor, classes: Sequence[str], skipped: list[tuple[str, str]],
                 channels: int) -> None:
        self.files = tuple(Path(f) for f in files)
        self.shard, self.offset, self.size = shard.astype(np.int32), offset.astype(np.int64), size.astype(np.int64)
        self.paths, self.labels, self.classes = keys, labels, list(classes)
        self.skipped, self.channels = list(skipped), int(channels)
        if not len(self.shard) == len(self.offset) == len(self.size) == len(keys) == len(labels):
            raise ValueError("shard, offset, size, keys and labels must have one entry per sample")
        self._check_labels()
        self._open: OrderedDict[int, io.FileIO] = OrderedDict()
        self._pid = os.getpid()

    def name(self, i: int) -> str:
        return f"{self.files[int(self.shard[i])]}:{self.paths[i]}"

    def read_bytes(self, i: int) -> bytes:
        """The sample's encoded image; a shard that cannot be read, or is shorter than indexed, raises
        ValueError naming the sample."""
        n = int(self.size[i])
        try:
            data = os.pread(self._fd(int(self.shard[i])), n, int(self.offset[i]))
        except OSError as e:
            raise cannot_read(self.name(i), str(e.strerror or e)) from e
        if len(data) != n:
            raise cannot_read(self.name(i), "the shard ends before the image does (changed since it "
                                            "was indexed?)")
        return data

    def _fd(self, s: int) -> int:
        """An open descriptor of shard s (file objects: closed when dropped); each process (DataLoader workers
        are forked) opens its own."""
        if self._pid != os.getpid():
            self._open, self._pid = OrderedDict(), os.getpid()
        f = self._open.pop(s, None)
        if f is None:
            f = open(self.files[s], "rb", buffering=0)
            if len(self._open) >= OPEN_SHARDS:
                self._open.popitem(last=False)[1].close()
        self._open[s] = f
        return f.fileno()

    def __getstate__(self) -> dict[str, Any]:  # open files stay with the process that opened them
        return {**self.__dict__, "_open": OrderedDict(), "_pid": -1}

    def subset(self, indices: Sequence[int] | Tensor | np.ndarray) -> ShardSource:
        idx = as_index(indices).numpy()
        return ShardSource(self.files, self.shard[idx], self.offset[idx], self.size[idx], self.paths.take(idx),
                           self.labels[idx], self.classes, [], self.channels)

    def __repr__(self) -> str:
        return (f"ShardSource({len(self)} images in {len(self.files)} tar shard(s) in {self.files[0].parent}, "
                f"{self.num_classes} classes, read lazily)")


def open_shards(spec: str, split: str = "train", on_error: Literal["skip", "raise"] = "skip",
                cache: PathLike | None = None, report: bool = True) -> ShardSource:
    """The samples of the shard set `spec` at `split` (see the module docstring for the forms), from the
    cached index when the shards are unchanged; unusable samples are reported (when `report`) or raise,
    with on_error="raise"."""
    files = shard_split(spec, split)
    if files is None:
        raise NoTestSplitError(f"{spec} has no {split} shards (no {'/ '.join(SPLIT_DIRS[split])}/ subdirectory of "
                               f".tar files and no shard names with those words)")
    if not files:
        raise FileNotFoundError(f"{spec}: no .tar shards found")
    key = _index_key(files)
    where = index_path(files, key, cache)
    with _exclusive(where):  # the processes of a node starting together: one reads the headers, the rest wait
        cached = read_cached(where, key, "shard index")
        if cached is None:
            cached = _build_index(files)
            write_cached(where, cached, key)
    src = _source(files, cached)
    report_or_raise(files[0].parent, src.skipped, on_error, report)
    return src


@contextlib.contextmanager
def _exclusive(index: Path) -> Iterator[None]:
    """Hold an exclusive lock beside `index` (a file system without locks: go on without one)."""
    index.parent.mkdir(parents=True, exist_ok=True)
    with open(index.with_name(f".{index.name}.lock"), "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX)
        except OSError:
            pass
        yield  # closing the file releases the lock


def _build_index(files: list[Path]) -> dict[str, np.ndarray]:
    fields = frozenset(e.lstrip(".") for e in image_extensions())
    with ThreadPoolExecutor(max_workers=min(8, len(files))) as pool:  # reading headers waits on storage
        scans = list(tqdm(pool.map(lambda f: _scan_shard(f, fields), files), total=len(files), unit="shard",
                          desc=f"indexing {files[0].parent.name or 'shards'}", disable=len(files) < 20))
    shard = np.concatenate([np.full(len(s.keys), i, np.int32) for i, s in enumerate(scans)])
    keys = [k for s in scans for k in s.keys]
    skipped = [x for s in scans for x in s.skipped]
    keep = np.ones(len(keys), dtype=bool)
    first: dict[str, int] = {}
    for i, k in enumerate(keys):  # held-out splits are saved by key: a key must name one sample
        if k in first:
            keep[i] = False
            skipped.append((f"{files[shard[i]]}:{k}", f"duplicate key (also in {files[shard[first[k]]]})"))
        else:
            first[k] = i
    names: dict[int, str] = {}
    for s in scans:
        for label, n in s.names.items():
            names.setdefault(label, n)
    strings = Strings([k for k, ok in zip(keys, keep) if ok])
    arrays = dict(shard=shard[keep], offset=np.array([o for s in scans for o in s.offsets], np.int64)[keep],
                  size=np.array([z for s in scans for z in s.sizes], np.int64)[keep],
                  labels=np.array([y for s in scans for y in s.labels], np.int64)[keep],
                  key_data=strings.data, key_offsets=strings.offsets,
                  json_labels=np.array(sorted(names), np.int64), json_names=np.array([names[k] for k in sorted(names)], str),
                  skipped=np.array(skipped, dtype=str).reshape(-1, 2), channels=np.array(3))
    probe = _source(files, arrays, check=False)
    arrays["channels"] = np.array(guess_channels(lambda i: io.BytesIO(probe.read_bytes(i)), len(probe)))
    return arrays


def _source(files: list[Path], a: dict[str, np.ndarray], check: bool = True) -> ShardSource:
    """The source from index arrays, with class names from the index file beside the shards, else the
    samples' json, else the label numbers."""
    labels = torch.from_numpy(a["labels"])
    if not len(labels):
        raise ValueError(f"no usable samples in {len(files)} shard(s) in {files[0].parent}"
                         + "".join(f"\n  {p}: {why}" for p, why in a["skipped"].tolist()[:20]))
    top = int(labels.max()) + 1
    found = class_index(files[0].parent)
    if found is not None:
        classes, where = found
        if check and top > len(classes):
            raise ValueError(f"{where} names {len(classes)} classes but the shards hold label {top - 1}; "
                             "fix the class list (one name per label, in label order)")
    else:
        named = dict(zip(a["json_labels"].tolist(), a["json_names"].tolist()))
        classes = [named.get(i, str(i)) for i in range(max(top, max(named, default=-1) + 1))]
    skipped = [(str(p), str(why)) for p, why in a["skipped"].tolist()]
    return ShardSource(files, a["shard"], a["offset"], a["size"], Strings(data=a["key_data"], offsets=a["key_offsets"]),
                       labels, classes, skipped, int(a["channels"]))
