"""The user's dataset string parsed once into a DatasetSpec: which kind of source it names and where.

One small registry of kinds, each knowing how to detect itself, open a split, say whether it has a test
split, and write its canonical form (what RUN/split.json records, readable from any directory):

    named     fashion_mnist, mnist, mnist5k, cifar10, cifar100, digits (case and - vs _ ignored)
    shards    WebDataset tar shards: a .tar file or pattern, or a directory of them   (prefix wds: or shards:)
    hf        a Hugging Face table: saved dataset, parquet/arrow directory             (prefix hf:)
    npz       an .npz file
    idx       a folder of IDX files (MNIST layout)
    cifar     a folder of CIFAR binary batches
    folder    an image folder (class folders, optionally under train/ and test/)      (prefix folder:)

Without a prefix the first kind that detects the string wins, in this order; a prefix says which kind
for the ambiguous cases (a folder of class folders that also holds .tar files, an image folder read by
``datasets``' imagefolder builder), as timm's ``wds:`` / ``hf:`` / ``folder:`` do. A prefix the kind did not
need is dropped from the canonical form, so ``folder:DIR`` and ``DIR`` name the same run data. A spec
keeps what it looked up (a Hugging Face table's splits), so one run reads a table's split list once.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from ..errors import NoTestSplitError
from ..utils.size import SizeLike
from .base import SPLIT_DIRS, Source
from .sources.arrays import (NAMED_DATASETS, check_split, cifar_has_test, cifar_layout, find_idx, load_cifar_binary,
                             load_idx, load_npz, named_key, npz_has_test, open_named)
from .sources.folder import FolderSource, open_folder
from .sources.hf import PREFIX as HF_PREFIX
from .sources.hf import hf_query, is_hf_table, load_hf_splits, open_hf, parse_hf_spec, pick_split
from .sources.shards import is_shard_spec, open_shards, shard_split

PathLike = str | os.PathLike


@dataclass(frozen=True)
class ReadOptions:
    """How a source is read (image folders: size, on_error, cache, in_memory; shards: on_error, cache;
    tables: on_error); `report`: print unusable files as they are found."""

    data_dir: PathLike | None = None
    size: SizeLike | None = None
    on_error: Literal["skip", "raise"] = "skip"
    cache: PathLike | None = None
    in_memory: bool | str = "auto"
    report: bool = True


@dataclass(frozen=True)
class Kind:
    """One kind of source: how it is recognised and what it can do. `detect(text)` sees the string without
    a prefix; `open(spec, split, options)`, `has_test(spec)` and `canonical(spec)` see the parsed spec."""

    name: str
    detect: Callable[[str], bool]
    open: Callable[[DatasetSpec, str, ReadOptions], Source]
    has_test: Callable[[DatasetSpec], bool]
    canonical: Callable[[DatasetSpec], str]
    prefixes: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class DatasetSpec:
    """A dataset string parsed once: its `kind`, the `text` the user wrote (for messages), `body` (the text
    without its prefix: what the kind reads, so names in messages and sources stay as the user wrote them)
    and `target`, which data that is (a data set's name, an absolute path or shard pattern, a table directory
    and its column choices). Two specs are equal when they name the same data (`kind` and `target`, prefix
    or not)."""

    kind: Kind
    text: str
    body: str
    target: str
    prefixed: bool = False  # given with a prefix
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, text: str | DatasetSpec) -> DatasetSpec:
        """The spec of `text` (a spec is returned as it is); an unknown name or missing path is an error."""
        if isinstance(text, DatasetSpec):
            return text
        for kind in KINDS:
            for p in kind.prefixes:
                if text.startswith(p):
                    body = text[len(p):]
                    return cls(kind, text, body, _target(kind, body), prefixed=True)
        kind = next(k for k in KINDS if k.detect(text))
        return cls(kind, text, text, _target(kind, text))

    @property
    def named(self) -> bool:
        """A named data set (its recipes are written for it: the model is not fitted to the data)."""
        return self.kind is NAMED

    @property
    def canonical(self) -> str:
        """The form RUN/split.json records: names as given, paths absolute."""
        return self.kind.canonical(self)

    @property
    def path(self) -> Path:
        """The file or directory as given (a table's without its column choices)."""
        return Path(self.body.partition("?")[0]).expanduser()

    def has_test_split(self) -> bool:
        """Whether the source comes with its own test images: named data sets, IDX with t10k files, CIFAR with
        a test batch, .npz with x_test/images_test, folders and shard sets with test/ (or val/, valid/,
        validation/), tables with a test (or validation) split."""
        if "has_test" not in self._memo:
            self._memo["has_test"] = self.kind.has_test(self)
        return self._memo["has_test"]

    def open(self, split: str = "train", options: ReadOptions = ReadOptions()) -> Source:
        """The source at `split`. A source without a test part asked for "test" raises NoTestSplitError
        instead of handing back the training images (vitlab.data.splits holds out a share instead)."""
        check_split(split)
        if split == "test" and not self.has_test_split():
            raise NoTestSplitError(
                f"{self.text} has no test split (no x_test/y_test arrays, no test/ val/ valid/ validation/ subfolder "
                "or split); `vitlab train` holds out data.test_fraction of it and saves the list in RUN/split.json, "
                "so evaluate the run directory (`vitlab eval RUN`), or pass --split train")
        return self.kind.open(self, split, options)

    def open_folder(self, split: str, options: ReadOptions) -> tuple[Source, str, FolderSource] | None:
        """For an image folder: (source, the line saying whether it was decoded into memory and why, its files
        read lazily); None for every other kind."""
        if self.kind is not FOLDER:
            return None
        o = options
        return open_folder(_split_folder(self.path, split) or self.path, o.size, o.on_error, o.cache, o.in_memory,
                           o.report)

    def hf_splits(self) -> dict[str, Any]:
        """A table's splits (datasets.Dataset by name), looked up once per spec."""
        if "splits" not in self._memo:
            self._memo["splits"] = load_hf_splits(self.path)
        return self._memo["splits"]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DatasetSpec) and (self.kind.name, self.target) == (other.kind.name, other.target)

    def __hash__(self) -> int:
        return hash((self.kind.name, self.target))

    def __str__(self) -> str:
        return self.text


def _target(kind: Kind, body: str) -> str:
    """What the kind reads: a named set's key, the table directory (absolute) with its query, an absolute
    path or shard pattern; a path that does not exist is an error naming what a spec may be."""
    if kind.name == "named":
        return named_key(body) or body
    if kind.name == "hf":
        path, cols = parse_hf_spec(body)
        return str(path.resolve()) + hf_query(cols)
    if kind.name == "shards":
        return str(Path(body).expanduser().resolve())
    path = Path(body).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"dataset {body!r} is neither a known name ({', '.join(NAMED_DATASETS)}) nor an existing path")
    if path.is_file() and kind.name != "npz":
        raise ValueError(f"{path}: a dataset file must be a .npz; use a folder for images, IDX or CIFAR files")
    return str(path.resolve())


def _split_folder(path: Path, split: str) -> Path | None:
    """root/train or root/test (else val/, valid/, validation/) when the folder is split that way."""
    return next((path / d for d in SPLIT_DIRS[split] if (path / d).is_dir()), None)


def _path_canonical(spec: DatasetSpec) -> str:
    """The absolute path, with the prefix only when the path alone would be read as another kind."""
    if spec.prefixed and DatasetSpec.parse(spec.target).kind is not spec.kind:
        return spec.kind.prefixes[0] + spec.target
    return spec.target


def _hf_canonical(spec: DatasetSpec) -> str:  # as runs have always recorded it: hf: kept when given
    return HF_PREFIX + spec.target if spec.prefixed else _path_canonical(spec)


def _is_file(suffix: str) -> Callable[[str], bool]:
    return lambda text: Path(text).expanduser().is_file() and Path(text).suffix.lower() == suffix


def _dir_with(found: Callable[[Path], object]) -> Callable[[str], bool]:
    return lambda text: Path(text).expanduser().is_dir() and found(Path(text).expanduser()) is not None


def _open_folder(spec: DatasetSpec, split: str, o: ReadOptions) -> Source:
    return spec.open_folder(split, o)[0]  # type: ignore[index]


def _open_hf(spec: DatasetSpec, split: str, o: ReadOptions) -> Source:
    path, cols = parse_hf_spec(spec.body)
    return open_hf(path, cols, spec.hf_splits(), split, o.on_error, o.report)


NAMED = Kind("named", lambda text: named_key(text) is not None,
             lambda spec, split, o: open_named(spec.target, split, o.data_dir),
             lambda spec: True, lambda spec: spec.text)
SHARDS = Kind("shards", is_shard_spec,
              lambda spec, split, o: open_shards(spec.body, split, o.on_error, o.cache, o.report),
              lambda spec: shard_split(spec.body, "test") is not None, _path_canonical, ("wds:", "shards:"))
HF = Kind("hf", lambda text: is_hf_table(Path(text).expanduser()), _open_hf,
          lambda spec: pick_split(spec.hf_splits(), "test") is not None, _hf_canonical, (HF_PREFIX,))
NPZ = Kind("npz", _is_file(".npz"), lambda spec, split, o: load_npz(spec.path, split),
           lambda spec: npz_has_test(spec.path), _path_canonical)
IDX = Kind("idx", _dir_with(lambda p: find_idx(p, "train", "images")), lambda spec, split, o: load_idx(spec.path, split),
           lambda spec: find_idx(spec.path, "test", "images") is not None, _path_canonical)
CIFAR = Kind("cifar", _dir_with(cifar_layout), lambda spec, split, o: load_cifar_binary(spec.path, split),
             lambda spec: cifar_has_test(spec.path), _path_canonical)
FOLDER = Kind("folder", lambda text: True, _open_folder, lambda spec: _split_folder(spec.path, "test") is not None,
              _path_canonical, ("folder:",))
KINDS = (NAMED, SHARDS, HF, NPZ, IDX, CIFAR, FOLDER)  # detection order; FOLDER takes the rest (and says what is missing)


def open_dataset(
    spec: str | DatasetSpec,
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
    (vitlab.data.sources.shards), a Hugging Face table (vitlab.data.sources.hf)), with an optional prefix
    (``folder:``, ``wds:`` / ``shards:``, ``hf:``); see DatasetSpec.

    A folder with train/ and test/ (or val/, valid/, validation/) subfolders of class folders is read at
    `split`. A source without a test part (a flat class folder, an .npz without x_test/y_test, a folder
    with only train/) is all "train"; asking it for "test" raises NoTestSplitError instead of handing back
    the training images (see has_test_split and vitlab.data.splits for the held-out split training makes).
    `size`, `on_error`, `cache` and `in_memory` apply to image folders: read lazily (FolderSource) or
    decoded into memory (load_image_folder), as vitlab.data.sources.folder.decide_in_memory says. Shards
    and tables are always read lazily; `cache` says where a shard set's index is kept. Unusable files are
    printed (stderr) as they are found, unless not `report` (the caller lists `source.skipped` itself).
    """
    return DatasetSpec.parse(spec).open(split, ReadOptions(data_dir, size, on_error, cache, in_memory, report))


def has_test_split(spec: str | DatasetSpec) -> bool:
    """Whether the source `spec` names comes with its own test images (DatasetSpec.has_test_split)."""
    return DatasetSpec.parse(spec).has_test_split()
