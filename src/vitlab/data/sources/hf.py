"""Hugging Face ``datasets`` tables as a source: rows with an encoded image and a label, read one by one.

``data.dataset`` forms (all local; nothing is downloaded at run time):

    DIR            a dataset saved with ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (memory-mapped
                   where it lies; a DatasetDict's ``test`` (else ``validation``, ``valid``, ``val``) split is
                   the test split)
    DIR            a directory of ``.parquet`` or ``.arrow`` files (in DIR, DIR/data/ or DIR/train/ ...; the
                   hub's ``data/train-00000-of-00004.parquet`` layout): the split is read from each file name
                   (train, else test/val/valid/validation), and ``datasets`` converts the files once into its
                   own cache (~/.cache/huggingface/datasets), as ``load_dataset`` always does
    hf:DIR         either of the above, or an image folder read by ``datasets``' ``imagefolder`` builder
                   (class subfolders, an optional metadata.csv / metadata.jsonl); vitlab reads a plain class
                   folder itself without ``hf:`` (vitlab.data.sources.folder)
    ...?image=COL&label=COL   other columns than the detected ones (the one ``Image`` column; ``label``,
                   else the one ``ClassLabel`` column)

Class names come from the label's ``ClassLabel`` feature (integer labels without one are named by their
number, string labels are sorted). Rows without a label (None, or -1 as ClassLabel marks it) are left out
and listed. The image column is cast to ``Image(decode=False)``, so ``read_bytes(i)`` hands out the
stored encoded bytes (or reads the file a row's ``path`` names) and decoding happens in the pipeline's
workers, as for files. A hub name (``hf:user/name`` with no such directory) is an error naming how to
save the dataset locally first; HF_HUB_OFFLINE / HF_DATASETS_OFFLINE are set before ``datasets`` is imported.
Only ``datasets``' own builders (parquet, arrow, imagefolder) and ``load_from_disk`` read the directory, so a
loading script in it is never run.
"""
from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any, Literal, Sequence
from urllib.parse import parse_qsl

import numpy as np
import torch
from torch import Tensor

from ...errors import NoTestSplitError, require
from ..base import SPLIT_DIRS, EncodedSource, as_index, report_or_raise
from .images import cannot_read, guess_channels

PathLike = str | os.PathLike
PREFIX = "hf:"
_TABLES = ((".parquet", "parquet"), (".arrow", "arrow"))


def _saved(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or ((path / "state.json").is_file()
                                                      and (path / "dataset_info.json").is_file())


def _table_files(path: Path) -> tuple[str, dict[str, list[str]]] | None:
    """(builder, split -> files) for a directory of parquet or arrow files, or None."""
    for ext, builder in _TABLES:
        files: dict[str, list[str]] = {}
        for d in (path, path / "data"):
            for f in sorted(d.glob(f"*{ext}")):
                words = set(re.split(r"[-_.]", f.stem.lower()))
                files.setdefault("test" if words & set(SPLIT_DIRS["test"]) else "train", []).append(str(f))
        for split, names in SPLIT_DIRS.items():
            for name in names:
                files.setdefault(split, []).extend(str(f) for f in sorted((path / name).glob(f"*{ext}")))
        files = {s: fs for s, fs in files.items() if fs}
        if files:
            return builder, files
    return None


def is_hf_table(path: Path) -> bool:
    """Whether `path` is a Hugging Face table without a prefix: a saved dataset or a parquet/arrow directory."""
    return path.is_dir() and (_saved(path) or _table_files(path) is not None)


def parse_hf_spec(body: str) -> tuple[Path, dict[str, str]]:
    """(directory, column choices) of an HF spec (``DIR?image=COL&label=COL``, without ``hf:``); a name that
    is not a local directory is an error."""
    body, _, query = body.partition("?")
    cols = dict(parse_qsl(query, strict_parsing=bool(query)))
    unknown = set(cols) - {"image", "label"}
    if unknown:
        raise ValueError(f"{body}: unknown option(s) {', '.join(sorted(unknown))}; use ?image=COLUMN&label=COLUMN")
    path = Path(body).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"{PREFIX}{body}: no directory {path}; vitlab downloads nothing at run time. For a dataset on the Hugging "
            f"Face hub, save it once where there is network (python -c \"import datasets; datasets.load_dataset("
            f"'{body}').save_to_disk('DIR')\", or huggingface-cli download {body} --repo-type dataset --local-dir "
            "DIR) and pass hf:DIR")
    return path, cols


def hf_query(cols: dict[str, str]) -> str:
    """The column choices as the spec writes them (``?image=COL&label=COL``, or nothing)."""
    query = "&".join(f"{k}={v}" for k, v in cols.items())
    return f"?{query}" if query else ""


def _datasets() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # read when datasets is first imported
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    return require("datasets", "hf", needed_by="Hugging Face data sets")


def load_hf_splits(path: Path) -> dict[str, Any]:
    """split name -> datasets.Dataset for a saved dataset, a parquet/arrow directory or an image folder."""
    ds = _datasets()
    if _saved(path):
        loaded = ds.load_from_disk(str(path))
    elif (tables := _table_files(path)) is not None:
        loaded = ds.load_dataset(tables[0], data_files=tables[1])
    else:
        loaded = ds.load_dataset("imagefolder", data_dir=str(path))
    return {"train": loaded} if isinstance(loaded, ds.Dataset) else dict(loaded)


def pick_split(splits: dict[str, Any], split: str) -> str | None:
    """The table's split that stands for `split` (train; test, else validation, valid, val), or None."""
    return next((s for s in SPLIT_DIRS[split] if s in splits), None)


def _columns(table: Any, cols: dict[str, str], where: str) -> tuple[str, str]:
    """The (image, label) columns: as chosen in the spec, else the one Image column and `label`, else the
    one ClassLabel column."""
    ds = _datasets()
    feats = table.features
    image = cols.get("image") or _only([c for c, f in feats.items() if isinstance(f, ds.Image)], "an Image", feats,
                                       where, "image")
    if "label" in cols or "label" in feats:
        label = cols.get("label", "label")
    else:
        label = _only([c for c, f in feats.items() if isinstance(f, ds.ClassLabel)], "a ClassLabel", feats, where, "label")
    for what, c in (("image", image), ("label", label)):
        if c not in feats:
            raise ValueError(f"{where} has no column {c!r} (columns: {', '.join(feats)}); choose with ?{what}=COLUMN")
    if not isinstance(feats[image], ds.Image):
        raise ValueError(f"{where}: column {image!r} is {feats[image]}, not an Image feature; choose with ?image=COLUMN")
    return image, label


def _only(found: list[str], kind: str, feats: Any, where: str, what: str) -> str:
    if len(found) != 1:
        raise ValueError(f"{where} has {len(found) or 'no'} column(s) with {kind} feature ({', '.join(found) or '-'}; "
                         f"columns: {', '.join(feats)}); name the {what} column with ?{what}=COLUMN")
    return found[0]


def _labels(table: Any, column: str) -> tuple[np.ndarray, list[str]]:
    """(class index per row, -1 where there is none; class names) from the label column, without a Python
    object per row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = table.select_columns([column]).with_format("arrow")[:][column]
    feat = table.features[column]
    if isinstance(feat, _datasets().ClassLabel):
        return pc.fill_null(values, -1).to_numpy().astype(np.int64), list(feat.names)
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        names = sorted(pc.unique(values).drop_null().to_pylist())
        codes = pc.fill_null(pc.index_in(values, value_set=pa.array(names, values.type)), -1)
        return codes.to_numpy().astype(np.int64), names
    labels = pc.fill_null(values, -1).to_numpy().astype(np.int64)
    return labels, [str(i) for i in range(int(labels.max(initial=-1)) + 1)]


class HFSource(EncodedSource):
    """Rows of a Hugging Face table read lazily: the table memory-mapped, labels in memory, each row's
    encoded image handed out by ``read_bytes(i)``. No per-row names (``paths`` None): held-out splits are
    saved by row number, which a saved table keeps."""

    def __init__(self, table: Any, column: str, rows: np.ndarray, labels: Tensor, classes: Sequence[str],
                 skipped: list[tuple[str, str]], channels: int, where: str) -> None:
        self.table, self.column, self.rows, self.labels = table, column, np.asarray(rows, np.int64), labels
        self.classes, self.skipped, self.channels, self.where = list(classes), list(skipped), int(channels), where
        self._check_labels()

    def name(self, i: int) -> str:
        return f"{self.where}[row {int(self.rows[i])}]"

    def read_bytes(self, i: int) -> bytes:
        """The row's encoded image (its stored bytes, or the file its path names)."""
        cell = self.table[int(self.rows[i])][self.column]
        data = cell.get("bytes") if cell else None
        if data is None and cell and cell.get("path"):
            try:
                data = Path(cell["path"]).read_bytes()
            except OSError as e:
                raise cannot_read(f"{self.name(i)} ({cell['path']})", str(e.strerror or e)) from e
        if not data:
            raise cannot_read(self.name(i), "the row has no image")
        return data

    def subset(self, indices: Sequence[int] | Tensor | np.ndarray) -> HFSource:
        idx = as_index(indices)
        return HFSource(self.table, self.column, self.rows[idx.numpy()], self.labels[idx], self.classes, [],
                        self.channels, self.where)

    def __repr__(self) -> str:
        return f"HFSource({len(self)} rows of {self.where}, {self.num_classes} classes, read lazily)"


def open_hf(path: Path, cols: dict[str, str], splits: dict[str, Any], split: str = "train",
            on_error: Literal["skip", "raise"] = "skip", report: bool = True) -> HFSource:
    """The rows of `split` of the table at `path` (its `splits`, from load_hf_splits; `cols`, the column
    choices of the spec, see the module docstring); unlabelled rows are reported (when `report`) or raise,
    with on_error="raise"."""
    name = pick_split(splits, split)
    if name is None:
        raise NoTestSplitError(f"{path} has no {split} split (it has: {', '.join(splits)}); vitlab train holds out "
                               "data.test_fraction of the training rows instead")
    table, where = splits[name], f"{path}:{name}"
    image, label = _columns(table, cols, where)
    labels, classes = _labels(table, label)
    rows = np.flatnonzero(labels >= 0)
    skipped = [(f"{where}[row {r}]", "no label") for r in np.flatnonzero(labels < 0).tolist()]
    if not len(rows):
        raise ValueError(f"{where}: no labelled rows (column {label!r})")
    table = table.cast_column(image, _datasets().Image(decode=False)).select_columns([image])
    src = HFSource(table, image, rows, torch.from_numpy(labels[rows]), classes, skipped, 3, where)
    src.channels = guess_channels(lambda i: io.BytesIO(src.read_bytes(i)), len(src))
    report_or_raise(path, skipped, on_error, report)
    return src
