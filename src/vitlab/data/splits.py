"""Train and test sets for a run, honest when the source has no test part.

A flat class folder, a folder with only train/, or an .npz without x_test/y_test has no test images.
Evaluating on the training images would report memorisation as accuracy, so a run holds out a
stratified, seeded share of the source instead and writes which images it held out to RUN/split.json
(relative file paths for folders, row indices for arrays). Resuming the run and `vitlab eval RUN`
read that file back, so the held-out images stay the same ones for the life of the run, even when
files are added to the folder later (new files are never counted as test images).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from ..utils.io import atomic_write
from ..utils.size import SizeLike
from .base import Source
from .holdout import holdout_mask, train_dev_split
from .recipe import DataSection
from .sources.folder import FolderSource
from .spec import DatasetSpec, ReadOptions

PathLike = str | os.PathLike
SPLIT_FILE = "split.json"


@dataclass
class RunData:
    """What a run trains, evaluates and tests on, and the lines that tell the user where each split came from.

    ``test``: the source's own test split, or a share of the source held out by this run (``held_out``; see
    RUN/split.json). ``dev``: a share of the training images held out for per-epoch evaluation and "best"
    (data.dev_fraction), None when the per-epoch evaluation reads test."""

    train: Source
    test: Source
    held_out: bool
    notes: list[str] = field(default_factory=list)
    spec: DatasetSpec | None = None  # the source, parsed once
    dev: Source | None = None

    @property
    def test_name(self) -> str:
        return "held-out test" if self.held_out else "test"

    @property
    def eval_set(self) -> Source:
        """What the per-epoch evaluation reads: the dev split, or test without one."""
        return self.dev if self.dev is not None else self.test

    @property
    def eval_name(self) -> str:
        return "dev" if self.dev is not None else "test"

    @property
    def classes(self) -> list[str]:
        return list(self.train.classes)

    def narrowed(self, train_limit: int | None, dev_fraction: float, seed: int) -> RunData:
        """The first ``train_limit`` training images (all when None), minus a ``dev_fraction`` dev split
        (stratified, seeded; none when 0)."""
        train, dev = self.train, None
        if train_limit:
            train = train.subset(torch.arange(min(train_limit, len(train))))
        if dev_fraction > 0:
            train, dev = train_dev_split(train, dev_fraction, seed=seed)
        return RunData(train, self.test, self.held_out, list(self.notes), self.spec, dev)


def open_splits(recipe: DataSection, run_dir: PathLike, seed: int, write: bool,
                size: SizeLike | None = None) -> RunData:
    """A run's splits from its data recipe: the source (data.dataset), its test split or a held-out one
    (data.test_fraction, RUN/split.json; ``write``: this process writes it), the first data.train_limit
    training images and a data.dev_fraction dev split. ``size``: the training size of an image folder decoded
    into memory (data.image_size, else the model's)."""
    d = recipe
    run = open_run_data(DatasetSpec.parse(d.dataset), run_dir, d.test_fraction, seed, d.data_dir,
                        size=d.image_size or size, on_error=d.on_error, cache=d.cache, write=write,
                        in_memory=d.in_memory)
    return run.narrowed(d.train_limit, d.dev_fraction, seed)


def open_run_data(
    spec: str | DatasetSpec,
    run_dir: PathLike,
    test_fraction: float = 0.2,
    seed: int = 0,
    data_dir: PathLike | None = None,
    size: int | tuple[int, int] | None = None,
    on_error: Literal["skip", "raise"] = "skip",
    cache: PathLike | None = None,
    write: bool = True,
    in_memory: bool | str = "auto",
) -> RunData:
    """The source's own train/test split, or (no test part) a held-out `test_fraction` of it, stratified
    by class and seeded; the held-out list is saved to RUN/split.json (when `write`) and reused from it.
    `size`, `on_error`, `cache`, `in_memory` apply to image folders (see vitlab.data.sources.open_folder).
    The test images of a folder are always read from their files (lazily), whether or not the training
    images are decoded into memory: evaluated the way `vitlab predict` reads an image."""
    spec = DatasetSpec.parse(spec)
    opts = ReadOptions(data_dir, size, on_error, cache, in_memory)
    if spec.has_test_split():
        train, how, _ = _open(spec, "train", opts)
        if cache not in (None, "auto"):  # one cache file per folder ("auto" names them by folder already)
            cache = Path(cache).with_name(Path(cache).stem + "-test.npz")
        test = spec.open("test", ReadOptions(data_dir, size, on_error, cache, in_memory=False))
        return RunData(train, test, False,
                       [f"test set: the source's own test split ({len(test)} images)", *how, *_resize_note(train, size)],
                       spec)
    full, how, files = _open(spec, "train", opts)
    path = Path(run_dir) / SPLIT_FILE
    if path.is_file():
        saved = read_split(path)
        mask, missing = _saved_mask(full, saved, path)
        if write:  # the same images; how they are read follows this start's settings (e.g. a new data.image_size)
            _write_json(path, {**saved, **_read_settings(full, data_dir, on_error)})
        note = (f"test set: {int(mask.sum())} images held out of {spec} when the run started, read back from {path}"
                + (f" ({len(missing)} of them are no longer readable)" if missing else ""))
    else:
        mask = holdout_mask(full, test_fraction, seed, "data.test_fraction")
        note = (f"test set: {spec} has no test split (no test/, val/, valid/ or validation/ folder, no x_test "
                f"array), so {int(mask.sum())} of its {len(full)} images ({test_fraction:.0%}, stratified, "
                f"seed {seed}; data.test_fraction) are held out and never trained on; list in {path}")
        if write:
            write_split(path, spec, full, mask, test_fraction, seed, data_dir, size, on_error)
    return RunData(full.subset(~mask), _from_files(full, mask, files), True,
                   [note, *how, *_resize_note(full, size)], spec)


def _from_files(full: Source, mask: torch.Tensor, files: FolderSource | None) -> Source:
    """The `mask` rows of `full`; for a folder decoded into memory, the same files read lazily instead."""
    if not full.in_memory or files is None:
        return full.subset(mask)
    held = {full.paths[i] for i in mask.nonzero().flatten().tolist()}
    return files.subset([i for i, p in enumerate(files.paths) if p in held])


def _open(spec: DatasetSpec, split: str, opts: ReadOptions) -> tuple[Source, list[str], FolderSource | None]:
    """The source at `split`, and for an image folder the line saying whether it was decoded into memory and
    why, and its files read lazily (FolderSource)."""
    folder = spec.open_folder(split, opts)
    if folder is None:
        return spec.open(split, opts), [], None
    src, why, files = folder
    return src, [f"images: {why}"], files


def _resize_note(ds: Source, size: Any) -> list[str]:
    """The resize policy of an image folder, stated (nothing for other sources)."""
    if not ds.in_memory or ds.paths is None:
        return []
    h, w = ds.image_size
    why = "data.image_size or model.img_size" if size else "the first image's size; set data.image_size to choose"
    return [f"images: each resized to {h}x{w} (bicubic, aspect ratio not kept; {why})"]


def write_split(path: Path, spec: DatasetSpec, full: Source, mask: torch.Tensor, fraction: float, seed: int,
                data_dir: PathLike | None, size: Any, on_error: str) -> None:
    """RUN/split.json: the source, how it was read, and which of its images are held out."""
    rows = mask.nonzero().flatten().tolist()
    record: dict[str, Any] = {
        "source": spec.canonical, **_read_settings(full, data_dir, on_error),
        "test_fraction": fraction, "seed": seed, "n_source": len(full), "n_test": len(rows),
    }
    if full.paths is not None:
        record["test_files"] = [full.paths[i] for i in rows]
    else:
        record["test_rows"] = rows
    _write_json(path, record)


def _read_settings(full: Source, data_dir: PathLike | None, on_error: str) -> dict[str, Any]:
    """How the source was read, so `vitlab eval RUN` decodes the held-out images as training did."""
    return {"data_dir": str(data_dir) if data_dir else None,
            "image_size": list(full.image_size) if full.in_memory and full.paths is not None else None,
            "on_error": on_error}


def _write_json(path: Path, record: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(record, indent=1) + "\n"))


def read_split(path: PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read the held-out split {path}: {e}") from e
    if not isinstance(record, dict) or "source" not in record or not ({"test_files", "test_rows"} & set(record)):
        raise ValueError(f"{path} is not a vitlab split file (needs 'source' and 'test_files' or 'test_rows')")
    return record


def _saved_mask(full: Source, saved: dict[str, Any], where: Path) -> tuple[torch.Tensor, list[str]]:
    """The held-out rows of `full` named in a split file, and the saved names no longer found in it."""
    if "test_files" in saved:
        if full.paths is None:
            raise ValueError(f"{where} lists image files but the data source is not an image folder")
        wanted = set(saved["test_files"])
        mask = torch.tensor([p in wanted for p in full.paths], dtype=torch.bool)
        missing = sorted(wanted - set(full.paths))
        return mask, missing
    if len(full) != saved.get("n_source"):
        raise ValueError(f"{where} was made for {saved.get('n_source')} images but {saved['source']} now holds "
                         f"{len(full)}: the rows it lists would be other images; start a new run")
    mask = torch.zeros(len(full), dtype=torch.bool)
    mask[torch.tensor(saved["test_rows"], dtype=torch.int64)] = True
    return mask, []


def open_heldout(run_dir: PathLike, split: Literal["train", "test"] = "test") -> tuple[Source, str]:
    """The held-out test images (or the rest, for "train") of a run whose RUN/split.json exists, read the
    way the run evaluated them (files of a folder read lazily); returns (dataset, description for titles)."""
    path = Path(run_dir) / SPLIT_FILE
    saved = read_split(path)
    full = DatasetSpec.parse(saved["source"]).open("train", ReadOptions(saved.get("data_dir"),
                                                                         on_error=saved.get("on_error", "skip"),
                                                                         in_memory=False))
    mask, missing = _saved_mask(full, saved, path)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        print(f"note: {len(missing)} held-out file(s) listed in {path} are missing or unreadable now: {shown}")
    chosen = mask if split == "test" else ~mask
    what = "held-out test images" if split == "test" else "training images (all but the held-out ones)"
    return full.subset(chosen), f"{int(chosen.sum())} {what} of {saved['source']} listed in {path}"


def run_split_file(ckpt: PathLike) -> Path | None:
    """RUN/split.json when `ckpt` is a run directory (or a file/folder inside one) that held out a test set."""
    p = Path(ckpt)
    for d in (p, p.parent, p.parent.parent):
        if (d / SPLIT_FILE).is_file():
            return d / SPLIT_FILE
    return None


def open_eval_data(ckpt: PathLike, data: str | None, split: Literal["train", "test"] = "test",
                   data_dir: PathLike | None = None) -> tuple[Source, str]:
    """The images to evaluate `ckpt` on, and their description. For a run that held out its test set
    (RUN/split.json) and `data` None or the run's own source, exactly the held-out images; otherwise
    `data` at `split` (an image folder's files read lazily, each preprocessed as `vitlab predict` would;
    vitlab.weights.runs.run_dataset names a run's data set)."""
    split_file = run_split_file(ckpt)
    spec = None if data is None else DatasetSpec.parse(data)
    if split_file is not None and (spec is None or _same(spec, read_split(split_file)["source"])):
        return open_heldout(split_file.parent, split)
    if spec is None:
        raise ValueError(f"pass --data: {ckpt} is not inside a training run directory that names its data set")
    return spec.open(split, ReadOptions(data_dir, in_memory=False)), f"{data} ({split})"


def _same(spec: DatasetSpec, recorded: str) -> bool:
    """Whether `spec` names the data a run recorded (its canonical form, or what it parses to: the same
    folder with or without a prefix); a recorded source that is gone is not the existing `spec`."""
    if spec.canonical == recorded:
        return True
    try:
        return spec == DatasetSpec.parse(recorded)
    except (OSError, ValueError):
        return False
