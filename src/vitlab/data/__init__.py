"""Data, in the order images flow: source -> split -> sampler -> per-sample pipeline -> batch operations.

recipe.py     DataSection: the recipe's ``data:`` section
base.py       Source: len, labels (int64), classes, skipped files, paths, channels, image_size; InMemorySource
              (``images`` uint8 N,C,H,W) or EncodedSource (``read_bytes(i)``, ``name(i)``); report_or_raise;
              Strings (compact path lists for forked workers)
spec.py       DatasetSpec: the user's dataset string parsed once (named set, .npz, IDX, CIFAR, image folder, tar
              shards, Hugging Face table; prefixes folder:, wds:/shards:, hf:); open_dataset, has_test_split
sources/      one module per kind
    arrays.py   in memory: IDX (MNIST, Fashion-MNIST), CIFAR binary, arrays / .npz, digits, mnist5k (ImageDataset)
    folder.py   image folders: FolderSource (lazy, cached index) or load_image_folder (decoded into memory);
                decide_in_memory (data.in_memory=auto: decoded when it takes <= 10% of RAM)
    images.py   the one image reader (open_image, open_upright, decode_image), load_image, image_to_array, find_images
    shards.py   WebDataset tar shards (ShardSource): random access by a per-sample index of the tar headers
    hf.py       Hugging Face datasets tables (HFSource): saved to disk, parquet/arrow directories, imagefolder
pack.py       `vitlab data pack`: any source written as WebDataset tar shards with a dataset.json index
holdout.py    holdout_mask, train_dev_split: stratified, seeded held-out shares (indices only)
splits.py     open_splits / open_run_data -> RunData(train, test, dev, notes): the source's test split or a
              held-out one listed in RUN/split.json, and a dev split; open_heldout, open_eval_data (`vitlab eval RUN`)
sampler.py    StepGrid (the step arithmetic); BatchSchedule: the rows of micro-batch (step, k) and every random
              seed, from (seed, epoch, step, k)
shard_order.py ShardSchedule: shard-sequential rows per reader from (seed, epoch, world size, workers);
              schedule_for picks one of the two on a StepGrid (data.shard_order)
pipeline.py   per-sample decode / Inception crop on the original / flip / resize in DataLoader workers;
              batch providers (InMemoryBatches | StreamingBatches), eval_batches, materialize
preprocess.py Preprocess: the one test-time resize/crop definition (whole | shorter, crop_pct, filter), part of a
              model's metadata; resize_pil (one image) and resize_batch (uint8 batches)
transforms.py batched ops on uint8 (B,C,H,W): TrainTransform (crop+flip when in memory, shifts, RandAugment,
              erasing, normalisation), EvalTransform (Preprocess + normalisation; .for_model(cfg)), Mixup, NORMALIZE
input.py      InputPipeline: what the trainer reads images through (schedule, augmentation halves, evaluation
              shares, the run's data lines), built once from the recipe, the splits, a StepGrid and a Layout
"""
from ..errors import MissingDependencyError
from .base import EncodedSource, InMemorySource, Source
from .holdout import holdout_mask, train_dev_split
from .sources import (
    DIGIT_CLASSES,
    FASHION_MNIST_CLASSES,
    ImageDataset,
    ImageTooLargeError,
    NoTestSplitError,
    decode_image,
    describe_dataset,
    find_images,
    image_extensions,
    image_to_array,
    load_arrays,
    load_cifar_binary,
    load_digits,
    load_idx,
    load_image,
    load_image_folder,
    load_mnist5k,
    load_npz,
    read_idx,
    search_dirs,
    FolderSource,
    HFSource,
    ShardSource,
    open_folder,
)
from .preprocess import Preprocess
from .spec import DatasetSpec, has_test_split, open_dataset
from .transforms import NORMALIZE, EvalTransform, Mixup, TrainTransform, get_normalize, smooth_one_hot

__all__ = [
    "DIGIT_CLASSES",
    "DatasetSpec",
    "EncodedSource",
    "FASHION_MNIST_CLASSES",
    "NORMALIZE",
    "EvalTransform",
    "HFSource",
    "ImageDataset",
    "ImageTooLargeError",
    "InMemorySource",
    "MissingDependencyError",
    "Mixup",
    "NoTestSplitError",
    "Preprocess",
    "ShardSource",
    "TrainTransform",
    "decode_image",
    "describe_dataset",
    "find_images",
    "get_normalize",
    "has_test_split",
    "holdout_mask",
    "image_extensions",
    "image_to_array",
    "load_arrays",
    "load_cifar_binary",
    "load_digits",
    "load_idx",
    "load_image",
    "load_image_folder",
    "load_mnist5k",
    "load_npz",
    "open_dataset",
    "read_idx",
    "search_dirs",
    "Source",
    "FolderSource",
    "open_folder",
    "smooth_one_hot",
    "train_dev_split",
]
