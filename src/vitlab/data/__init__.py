"""Data: in-memory uint8 datasets and batched tensor transforms.

datasets.py
    ImageDataset(images uint8 (N,C,H,W), labels int64 (N,), classes, skipped)  __len__/__getitem__/subset/num_classes
    open_dataset(spec, split="train", data_dir=None, size=None, on_error="skip", cache=None)
        spec: fashion_mnist | mnist | mnist5k | cifar10 | cifar100 | digits | a path (class folders, .npz, IDX/CIFAR dir)
        named sets are found in data_dir, then $VITLAB_DATA, then /usr/share/datasets/fashion-mnist
    load_idx(root, split, kind=None), read_idx(path), load_cifar_binary(root, split, label="fine"),
    load_image_folder(root, size=None, on_error="skip", channels=None, cache=None), load_arrays(images, labels, classes),
    load_npz(path, split=None), load_digits(split), load_mnist5k(split), load_image(path), image_to_array(img, channels)
    decode_image(stream, name, max_pixels=None)   uploaded bytes; refuses huge canvases from the header (ImageTooLargeError)
    train_dev_split(ds, dev_fraction, seed=0) -> (train, dev)   deterministic, stratified (holdout_mask)
    has_test_split(spec) -> bool; NoTestSplitError when a source without one is asked for "test"
    image_extensions() (what Pillow opens), find_images(inputs) -> (files, problems)  files/folders/globs
    describe_dataset(ds, name) -> str   counts per class and skipped files (`vitlab data SPEC`)
splits.py
    open_run_data(spec, run_dir, test_fraction, seed, ...) -> RunData(train, test, held_out, notes)
        a source without a test split gets a stratified held-out test set, listed in RUN/split.json
    open_heldout(run_dir, split), open_eval_data(ckpt, data, split, data_dir)   what `vitlab eval RUN` reads
preprocess.py  the one test-time preprocessing definition, part of a model's metadata
    Preprocess(img_size, resize="whole"|"shorter", crop_pct=1.0, interpolation="bilinear"|"bicubic")
        .from_config(model cfg), .resize_pil(img) -> img at img_size, .resize_batch(uint8 batch) -> float 0..255
transforms.py  (uint8 (B,C,H,W) on any device + torch.Generator -> normalised float32)
    NORMALIZE presets, get_normalize(name)
    TrainTransform(img_size, scale, ratio, flip, mean, std, randaugment=(n, m) | None, random_erasing, ops, fill, in_chans, translate)
    EvalTransform(preprocess | img_size, mean, std, in_chans=None), EvalTransform.for_model(cfg)
        (batch) -> Preprocess.resize_batch + normalise; .image(pil) -> (C,H,W); .normalize(batch at img_size)
    Mixup(mixup_alpha, cutmix_alpha, prob, switch_prob, label_smoothing, num_classes)(x, y, generator) -> (x, soft targets)
    smooth_one_hot(y, num_classes, smoothing)
"""
from ..errors import MissingDependencyError
from .datasets import (
    DIGIT_CLASSES,
    FASHION_MNIST_CLASSES,
    ImageDataset,
    ImageTooLargeError,
    NoTestSplitError,
    decode_image,
    describe_dataset,
    find_images,
    has_test_split,
    holdout_mask,
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
    open_dataset,
    read_idx,
    search_dirs,
    train_dev_split,
)
from .preprocess import Preprocess
from .transforms import NORMALIZE, EvalTransform, Mixup, TrainTransform, get_normalize, smooth_one_hot

__all__ = [
    "DIGIT_CLASSES",
    "FASHION_MNIST_CLASSES",
    "NORMALIZE",
    "EvalTransform",
    "ImageDataset",
    "ImageTooLargeError",
    "MissingDependencyError",
    "Mixup",
    "NoTestSplitError",
    "Preprocess",
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
    "smooth_one_hot",
    "train_dev_split",
]
