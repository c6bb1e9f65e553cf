"""Per-sample work in DataLoader worker processes, for sources read from disk, and the batch providers
the training loop and evaluation read from.

    training, encoded source:  rows of micro-batch (step, k) (vitlab.data.sampler) -> a worker decodes each
        file (at 1/2, 1/4 or 1/8 scale when the crop still covers the output: libjpeg's scaled decoding
        through PIL's ``draft``), Inception-crops it on the original image (aspect ratio kept), flips,
        resizes to the training size (PIL bilinear) -> uint8 (m, C, H, W) -> batched ops in the main
        process (vitlab.data.transforms: shifts, RandAugment, normalisation, erasing; mixup in the objective)
    training, in-memory source: the rows are gathered on the device; crop and flip happen batched there
    evaluation: the model's test-time Preprocess (vitlab.data.preprocess; per sample in workers for encoded
        sources, exactly as `vitlab predict` reads a file; batched on the device for in-memory ones)

Every random draw of sample j comes from a generator seeded by (seed, step, k, j), so whichever worker
reads it, however many workers there are, the pixels are the same. A file that cannot be read (corrupt,
truncated, deleted after the scan) is replaced by another row drawn from the same seed, so the step keeps
its batch size and the run stays reproducible; data.on_error=raise stops with the file named instead.
"""
from __future__ import annotations

import io
import math
import os
import random
from dataclasses import dataclass
from typing import Any, Iterator, Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .base import Source
from .sampler import BatchSchedule, MicroBatch, epoch_order, sample_seed
from .sources.arrays import ImageDataset
from .preprocess import Preprocess
from .sources.images import open_upright, reading, to_l_or_rgb
from .transforms import EvalTransform, crop_boxes, crop_draws

Skipped = list[tuple[str, str]]
MAX_REPLACEMENTS = 100  # tries to find a readable stand-in for an unreadable training file


def default_workers(local_processes: int = 1) -> int:
    """data.workers=null: the cores of this machine shared by its processes, at most 8 each."""
    return max(1, min(8, (os.cpu_count() or 1) // max(1, local_processes)))


@dataclass(frozen=True)
class CropSpec:
    """The per-sample part of training augmentation: Inception crop (area share `scale`, aspect `ratio`),
    horizontal flip, resize to `size`; `draft`: decode JPEGs at reduced size when the crop allows."""

    size: tuple[int, int]
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    draft: bool = True


# ------------------------------------------------------------------------------------------- one sample
def _finish(im: Image.Image) -> np.ndarray:
    arr = np.asarray(im, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def open_oriented(data: bytes, name: str) -> tuple[Image.Image, bool]:
    """Encoded bytes through the one image reader (sources.images.open_upright): the image as stored, not
    decoded yet when it is upright (the flag), else decoded and turned upright."""
    return open_upright(io.BytesIO(data), name)


def crop_resize(im: Image.Image, upright: bool, box: Tensor, flip: bool, channels: int, spec: CropSpec,
                name: str) -> np.ndarray:
    """Decode `im` (at 1/2, 1/4 or 1/8 scale when the crop `box` (top, left, height, width) still covers
    spec.size there), crop, resize to spec.size (PIL bilinear), flip: (H, W, C) uint8."""
    top, left, ch, cw = box.tolist()
    oh, ow = spec.size
    w, h = im.size
    with reading(name):
        if spec.draft and upright and im.format == "JPEG":
            im.draft(None, (math.ceil(w * ow / cw), math.ceil(h * oh / ch)))
        sx, sy = im.size[0] / w, im.size[1] / h
        im = to_l_or_rgb(im, channels)
        im = im.resize((ow, oh), Image.Resampling.BILINEAR, box=(left * sx, top * sy, (left + cw) * sx, (top + ch) * sy))
    if flip:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return _finish(im)


def _box(im: Image.Image, draws: Tensor, spec: CropSpec) -> Tensor:
    w, h = im.size
    return crop_boxes(torch.tensor([h]), torch.tensor([w]), draws, spec.ratio)[0]


def decode_crop(data: bytes, name: str, channels: int, spec: CropSpec, gen: torch.Generator) -> np.ndarray:
    """One training sample: (H, W, C) uint8 at spec.size, cropped on the image as stored (EXIF orientation
    applied), the crop and then the flip drawn from `gen`, as TrainReader does for each sample."""
    draws = crop_draws(1, spec.scale, spec.ratio, gen)
    flip = spec.flip and bool(torch.rand(1, generator=gen) < 0.5)
    im, upright = open_oriented(data, name)
    return crop_resize(im, upright, _box(im, draws, spec), flip, channels, spec, name)


def decode_preprocess(data: bytes, name: str, channels: int, preprocess: Preprocess) -> np.ndarray:
    """One evaluation sample: the image (EXIF orientation applied) in `channels` channels, through the model's
    test-time Preprocess (what `vitlab predict` does to a file), (H, W, C) uint8 at its img_size."""
    im, _ = open_oriented(data, name)
    with reading(name):
        return _finish(preprocess.resize_pil(to_l_or_rgb(im, channels)))


# -------------------------------------------------------------------------------- readers (in workers)
def _to_batch(arrays: list[np.ndarray], channels: int, size: tuple[int, int]) -> Tensor:
    if not arrays:
        return torch.empty(0, channels, *size, dtype=torch.uint8)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


class TrainReader(Dataset):
    """Reads one micro-batch per item (a MicroBatch from the sampler): decode, crop, flip, resize.

    The crops of a micro-batch are computed together (crop_boxes over every image's own size) from each
    sample's own draws, so a sample's pixels depend on (seed, step, k, j) only. An unreadable file is
    replaced by a row drawn from the same seed; its crop uses the same draws on the stand-in's size."""

    def __init__(self, source: Source, spec: CropSpec, seed: int, on_error: Literal["skip", "raise"]) -> None:
        self.source, self.spec, self.seed, self.on_error = source, spec, seed, on_error
        self.channels = int(source.channels)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, mb: MicroBatch) -> tuple[Tensor, Tensor, int, int, Skipped]:
        spec, skipped = self.spec, []
        seeds = [sample_seed(self.seed, mb.step, mb.k, j) for j in range(len(mb.rows))]
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        draws = torch.cat([crop_draws(1, spec.scale, spec.ratio, g) for g in gens])
        flips = [spec.flip and bool(torch.rand(1, generator=g) < 0.5) for g in gens]
        rows = mb.rows.tolist()
        opened = [self._open(r, skipped) for r in rows]
        sizes = torch.tensor([im[0].size[::-1] if im else (1, 1) for im in opened]).view(-1, 2)
        boxes = crop_boxes(sizes[:, 0], sizes[:, 1], draws, spec.ratio)
        arrays, labels = [], []
        for j, (row, im) in enumerate(zip(rows, opened)):
            out = self._crop(im, boxes[j], flips[j], row, skipped) if im else None
            pick = random.Random(seeds[j])
            for _ in range(MAX_REPLACEMENTS):
                if out is not None:
                    break
                row = pick.randrange(len(self.source))  # a stand-in drawn from the sample's own seed
                im = self._open(row, skipped)
                out = self._crop(im, _box(im[0], draws[j : j + 1], spec), flips[j], row, skipped) if im else None
            if out is None:
                raise ValueError(f"no readable image found in {MAX_REPLACEMENTS} tries for sample {j} of step "
                                 f"{mb.step}; is the data set's storage readable? Last error: {skipped[-1][1]}")
            arrays.append(out)
            labels.append(int(self.source.labels[row]))
        images = _to_batch(arrays, self.channels, spec.size)
        return images, torch.tensor(labels, dtype=torch.int64), mb.step, mb.k, skipped

    def _open(self, row: int, skipped: Skipped) -> tuple[Image.Image, bool] | None:
        try:
            return open_oriented(self.source.read_bytes(row), self.source.name(row))
        except ValueError as e:
            return self._failed(row, e, skipped)

    def _crop(self, im: tuple[Image.Image, bool], box: Tensor, flip: bool, row: int,
              skipped: Skipped) -> np.ndarray | None:
        try:
            return crop_resize(im[0], im[1], box, flip, self.channels, self.spec, self.source.name(row))
        except ValueError as e:
            return self._failed(row, e, skipped)

    def _failed(self, row: int, e: ValueError, skipped: Skipped) -> None:
        if self.on_error == "raise":
            raise ValueError(f"{e} (data.on_error=raise; data.on_error=skip replaces such files)") from None
        skipped.append((self.source.name(row), str(e)))


class EvalReader(Dataset):
    """Reads one chunk of rows per item: decode and preprocess (the model's Preprocess). Unreadable files are
    left out (an evaluation never scores a stand-in) and listed."""

    def __init__(self, source: Source, preprocess: Preprocess, channels: int,
                 on_error: Literal["skip", "raise"]) -> None:
        self.source, self.preprocess, self.channels, self.on_error = source, preprocess, channels, on_error

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, rows: Tensor) -> tuple[Tensor, Tensor, Skipped]:
        arrays, labels, skipped = [], [], []
        for row in rows.tolist():
            name = self.source.name(row)
            try:
                arrays.append(decode_preprocess(self.source.read_bytes(row), name, self.channels, self.preprocess))
                labels.append(int(self.source.labels[row]))
            except ValueError as e:
                if self.on_error == "raise":
                    raise
                skipped.append((name, str(e)))
        batch = _to_batch(arrays, self.channels, self.preprocess.img_size)
        return batch, torch.tensor(labels, dtype=torch.int64), skipped


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # a worker decodes; the main process's threads run the model


def _as_is(item: Any) -> Any:
    return item


def _loader(dataset: Dataset, items: Any, workers: int, device: torch.device, prefetch: int = 4) -> DataLoader:
    return DataLoader(dataset, batch_size=None, sampler=items, num_workers=workers, collate_fn=_as_is,
                      pin_memory=device.type == "cuda", worker_init_fn=_worker_init if workers else None,
                      prefetch_factor=prefetch if workers else None, persistent_workers=False)


class _Items:
    """A sampler of arbitrary items (micro-batches, row chunks) with a known length."""

    def __init__(self, items: Iterator[Any], n: int) -> None:
        self.items, self.n = items, n

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)

    def __len__(self) -> int:
        return self.n


# ------------------------------------------------------------------------------- batch providers (main)
class InMemoryBatches:
    """Micro-batches gathered from a data set held on the device; crop and flip are left to the batched
    transform."""

    def __init__(self, ds: ImageDataset, schedule: BatchSchedule, device: torch.device) -> None:
        self.images, self.labels = ds.images.to(device), ds.labels.to(device)
        self.schedule, self.device = schedule, device
        self.skipped: Skipped = []
        self._order: tuple[int, Tensor] | None = None

    def get(self, step: int, k: int) -> tuple[Tensor, Tensor]:
        epoch = step // self.schedule.steps_per_epoch
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, epoch_order(self.schedule.n, self.schedule.seed, epoch))
        idx = self.schedule.at(step, k, self._order[1]).rows.to(self.device)
        return self.images[idx], self.labels[idx]

    def close(self) -> None:
        pass


class StreamingBatches:
    """Micro-batches read from an encoded source by ``workers`` DataLoader processes, from ``start_step`` on
    (steps before it are never read); crop, flip and resize are done per sample there."""

    def __init__(self, source: Source, schedule: BatchSchedule, start_step: int, spec: CropSpec, seed: int,
                 on_error: Literal["skip", "raise"], workers: int, device: torch.device) -> None:
        remaining = (schedule.total_steps - start_step) * len(schedule.ks())
        items = _Items(schedule.iterate(start_step), max(0, remaining))
        self.loader = _loader(TrainReader(source, spec, seed, on_error), items, workers, device)
        self.device, self.skipped = device, []
        self._it: Iterator | None = None
        self._ready: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}

    def get(self, step: int, k: int) -> tuple[Tensor, Tensor]:
        """Micro-batch k of ``step``; asking again for the current step (a step rerun eagerly after
        torch.compile failed) gets the same images."""
        if self._it is None:
            self._it = iter(self.loader)
        while (step, k) not in self._ready:
            x, y, s, kk, skipped = next(self._it)
            self._ready = {key: v for key, v in self._ready.items() if key[0] >= step}
            self._ready[(s, kk)] = (x, y)
            self.skipped += skipped
        x, y = self._ready[(step, k)]
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def close(self) -> None:
        """Stop the worker processes."""
        self._it = None
        self._ready = {}


Batches = InMemoryBatches | StreamingBatches  # what the training loop reads micro-batches from: get(step, k)


def eval_batches(source: Source, tf: EvalTransform, batch_size: int, rows: Tensor | None = None,
                 workers: int = 0, on_error: Literal["skip", "raise"] = "skip", device: torch.device | str = "cpu",
                 skipped: Skipped | None = None) -> Iterator[tuple[Tensor, Tensor]]:
    """(model input, labels) on `device` in chunks of `batch_size` over `rows` (default: all), in order, as the
    eval transform `tf` defines it: in-memory images preprocessed batched on the device, encoded ones decoded
    and preprocessed per sample (Preprocess.resize_pil, as predict does) in `workers` processes, unreadable
    ones left out and appended to `skipped`."""
    device = torch.device(device)
    for x, y, resized in _preprocessed(source, tf, batch_size, rows, workers, on_error, device, skipped):
        x = x.to(device, non_blocking=True)
        yield (tf.normalize(x) if resized else tf(x)), y.to(device, non_blocking=True)


def _preprocessed(source: Source, tf: EvalTransform, batch_size: int, rows: Tensor | None, workers: int,
                  on_error: Literal["skip", "raise"], device: torch.device,
                  skipped: Skipped | None) -> Iterator[tuple[Tensor, Tensor, bool]]:
    """uint8 chunks, and whether they are preprocessed already (encoded sources) or still as stored."""
    rows = torch.arange(len(source)) if rows is None else torch.as_tensor(rows, dtype=torch.int64)
    chunks = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    if source.in_memory:
        for c in chunks:
            yield source.images[c], source.labels[c], False
        return
    channels = tf.norm.in_chans or int(source.channels)  # converted before resizing, as predict does
    reader = EvalReader(source, tf.preprocess, channels, on_error)
    for x, y, bad in _loader(reader, _Items(iter(chunks), len(chunks)), workers, device):
        if skipped is not None:
            skipped += bad
        yield x, y, True


def materialize(source: Source, tf: EvalTransform, rows: Tensor | None = None, workers: int = 0,
                batch_size: int = 256) -> ImageDataset:
    """`rows` of `source` preprocessed as `tf` defines (uint8 at its img_size; unreadable files left out and
    listed in ``skipped``): the few images analysis, few-shot probes and galleries use. Feed them to the model
    through ``tf.normalize``."""
    xs, ys, skipped = [], [], []
    for x, y, resized in _preprocessed(source, tf, batch_size, rows, workers, "skip", torch.device("cpu"), skipped):
        xs.append(x if resized else tf.preprocess.resize_batch(x).round().clamp(0, 255).to(torch.uint8))
        ys.append(y)
    c = tf.norm.in_chans or int(source.channels)
    images = torch.cat(xs) if xs else torch.empty(0, c, *tf.img_size, dtype=torch.uint8)
    labels = torch.cat(ys) if ys else torch.empty(0, dtype=torch.int64)
    return ImageDataset(images, labels, list(source.classes), skipped)
