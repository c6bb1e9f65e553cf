"""The data recipe: the ``data:`` section of a training recipe (``data.*`` overrides), owned by data/ because
everything it sets (source, splits, batching, augmentation, test-time preprocessing) is read here; the
trainer's Config holds it beside its other sections.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..utils.checks import check_choice
from ..utils.eval_fields import check_fields


@dataclass
class DataSection:
    """The ``data:`` section of a recipe: which images, how they are read, split, batched and augmented."""

    dataset: str = "fashion_mnist"  # a name (fashion_mnist, mnist, cifar10, digits, ...) or a path
    data_dir: str | None = None  # where named datasets live (else $VITLAB_DATA, system paths)
    dev_fraction: float = 0.0  # > 0: hold out this share of train for per-epoch eval and "best"; 0: use test
    test_fraction: float = 0.2  # sources without a test split: share held out as the test set (RUN/split.json)
    image_size: int | None = None  # image folders: training size (None: model.img_size; in memory without either: the first image's)
    in_memory: bool | str = "auto"  # image folders: decoded into memory (true), read lazily by workers (false), auto: by size (see the data guide)
    workers: int | None = None  # DataLoader worker processes for data read from disk; null: cores / processes (<= 8)
    cache: str | None = None  # image folders: decoded-image cache and folder index, a .npz path or "auto" (~/.cache/vitlab); null: none
    shard_order: str = "auto"  # global (one permutation an epoch), shards (shard-sequential readers), auto: shards for tar shards
    shuffle_buffer: int = 8192  # data.shard_order=shards: samples in each reader's shuffle buffer
    on_error: str = "skip"  # image folders: unusable files are listed and skipped/replaced (skip) or stop the run (raise)
    train_limit: int | None = None  # use only the first N training images (quick experiments, tests)
    batch_size: int = 256  # global batch per optimizer step (all processes and accumulation steps together)
    accum_steps: int = 1  # gradient accumulation: batch_size = accum_steps x processes x micro-batch
    eval_batch_size: int = 1024  # images per forward pass when evaluating (memory only; results do not change)
    normalize: str | None = None  # NORMALIZE preset; None keeps the model's mean/std (e.g. [-1, 1] of official weights)
    crop_scale: tuple[float, float] = (0.08, 1.0)  # Inception crop area range (paper: 0.05-1)
    crop_ratio: tuple[float, float] = (0.75, 1.3333333)  # Inception crop aspect-ratio range
    flip: bool = True  # random horizontal flip
    translate: int = 0  # random shift by up to this many whole pixels per axis, uncovered pixels filled (pad + crop)
    randaugment: tuple[int, int] | None = None  # (num_ops, magnitude 0-10)
    random_erasing: float = 0.0  # probability of erasing a random rectangle per image
    mixup_alpha: float = 0.0  # mixup Beta(alpha, alpha); 0: off
    cutmix_alpha: float = 0.0  # CutMix Beta(alpha, alpha); 0: off
    mixup_prob: float = 1.0  # share of batches mixed when mixup or CutMix is on
    mixup_switch_prob: float = 0.5  # with both on: chance of CutMix instead of mixup
    label_smoothing: float = 0.0  # share of the target spread evenly over all classes
    # Test-time preprocessing, written into the model's metadata (its eval_* fields, vitlab.data.Preprocess):
    # what eval, predict, serve and an ONNX export use, so they reproduce the run's evaluation.
    eval_resize: str | None = None  # test-time resize: whole (the paper's) or shorter (aspect kept, centre crop; timm); null: the model's
    eval_crop_pct: float | None = None  # in (0, 1]: the centre crop of the image scaled to size / eval_crop_pct; null: the model's
    eval_interpolation: str | None = None  # test-time resize filter: bilinear or bicubic (PIL's); null: the model's

    def validate(self) -> None:
        """The data section's own checks (Config.validate adds those that involve other sections)."""
        d = self
        check_choice("data.on_error", d.on_error, ("skip", "raise"))
        check_choice("data.shard_order", d.shard_order, ("auto", "global", "shards"))
        if d.shuffle_buffer < 1:
            raise ValueError(f"data.shuffle_buffer={d.shuffle_buffer} must be >= 1 (1: no shuffling within a reader)")
        if d.in_memory not in (True, False, "auto"):
            raise ValueError(f"data.in_memory={d.in_memory!r} is not one of true, false, auto")
        if d.workers is not None and d.workers < 0:
            raise ValueError(f"data.workers={d.workers} must be >= 0 (0: read in the training process), or null")
        check_fields("data.eval_", d.eval_resize or "whole", 1.0 if d.eval_crop_pct is None else d.eval_crop_pct,
                     d.eval_interpolation or "bilinear")
        if not 0 < d.test_fraction < 1:
            raise ValueError(f"data.test_fraction={d.test_fraction} must be in (0, 1)")
        if d.image_size is not None and d.image_size < 1:
            raise ValueError(f"data.image_size={d.image_size} must be >= 1 (or null)")
        if d.batch_size < 1 or d.accum_steps < 1 or d.batch_size % d.accum_steps:
            raise ValueError(f"data.batch_size={d.batch_size} must be a positive multiple of data.accum_steps={d.accum_steps}")
