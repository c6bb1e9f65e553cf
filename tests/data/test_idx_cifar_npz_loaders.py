"""IDX, CIFAR binary, arrays/.npz, named datasets and the dev split, each from files made here."""
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from vitlab.data import (
    FASHION_MNIST_CLASSES,
    ImageDataset,
    load_arrays,
    load_cifar_binary,
    load_idx,
    load_npz,
    open_dataset,
    read_idx,
    train_dev_split,
)
from vitlab.data.sources import DEBIAN_FASHION_MNIST


def _idx_bytes(arr: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def _write_idx(root: Path, split: str, images: np.ndarray, labels: np.ndarray, gz: bool) -> None:
    root.mkdir(parents=True, exist_ok=True)
    prefix = "train" if split == "train" else "t10k"
    for name, arr in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
        data = _idx_bytes(arr)
        if gz:
            with gzip.open(root / (name + ".gz"), "wb") as f:
                f.write(data)
        else:
            (root / name).write_bytes(data)


def _mnist_like(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_gz_and_raw_load_exactly(tmp_path, gz):
    x, y = _mnist_like(12)
    _write_idx(tmp_path / "mnist", "test", x, y, gz)
    ds = load_idx(tmp_path / "mnist", "test")
    assert ds.images.shape == (12, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert np.array_equal(ds.images[:, 0].numpy(), x) and np.array_equal(ds.labels.numpy(), y)
    assert ds.classes == [str(i) for i in range(10)]  # a directory not named "fashion" holds digits
    assert load_idx(tmp_path / "mnist", "test", kind="fashion_mnist").classes == FASHION_MNIST_CLASSES
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_idx(tmp_path / "mnist", "train")


def test_idx_bad_magic_truncation_and_count_mismatch(tmp_path):
    x, y = _mnist_like(5)
    _write_idx(tmp_path, "train", x, y, gz=False)
    img = tmp_path / "train-images-idx3-ubyte"
    good = img.read_bytes()
    img.write_bytes(good[:-10])
    with pytest.raises(ValueError, match="truncated"):
        load_idx(tmp_path)
    img.write_bytes(b"\x12\x34" + good[2:])
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(img)
    img.write_bytes(good)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(y[:4]))
    with pytest.raises(ValueError, match="labels for 5 images"):
        load_idx(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="corrupt"):
        load_idx(tmp_path)


def test_named_idx_found_via_data_dir_then_env_and_error_lists_places(tmp_path, monkeypatch):
    x, y = _mnist_like(10)
    _write_idx(tmp_path / "env" / "fashion-mnist", "train", x, y, gz=True)
    monkeypatch.setenv("VITLAB_DATA", str(tmp_path / "env"))
    ds = open_dataset("fashion_mnist", "train")
    assert ds.classes == FASHION_MNIST_CLASSES and len(ds) == 10
    x2, y2 = _mnist_like(7, seed=1)
    _write_idx(tmp_path / "dd" / "fashion_mnist", "train", x2, y2, gz=False)
    assert len(open_dataset("fashion-mnist", "train", data_dir=tmp_path / "dd")) == 7  # data_dir comes first
    with pytest.raises(FileNotFoundError) as e:
        open_dataset("mnist", "train", data_dir=tmp_path / "dd")
    msg = str(e.value)
    assert str(tmp_path / "dd") in msg and str(tmp_path / "env" / "MNIST" / "raw") in msg and "mnist5k" in msg
    with pytest.raises(FileNotFoundError, match="neither a known name"):
        open_dataset(str(tmp_path / "nope"))


@pytest.mark.skipif(not Path(DEBIAN_FASHION_MNIST).is_dir(), reason="Debian dataset-fashion-mnist not installed")
def test_debian_fashion_mnist_loads_full_splits(monkeypatch):
    monkeypatch.delenv("VITLAB_DATA", raising=False)
    train, test = open_dataset("fashion_mnist", "train"), open_dataset("fashion_mnist", "test")
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.class_counts() == [6000] * 10 and test.class_counts() == [1000] * 10
    assert train.classes == FASHION_MNIST_CLASSES


def _cifar_record_set(n: int, n_labels: int, rng) -> tuple[np.ndarray, np.ndarray, bytes]:
    labels = rng.integers(0, 10, (n, n_labels), dtype=np.uint8)
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    raw = np.concatenate([labels, images.reshape(n, -1)], 1).tobytes()
    return images, labels, raw


def test_cifar10_binary_train_test_names_and_plane_order(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "cifar-10-batches-bin"
    d.mkdir()
    parts = []
    for i in range(1, 6):
        im, lb, raw = _cifar_record_set(3, 1, rng)
        (d / f"data_batch_{i}.bin").write_bytes(raw)
        parts.append((im, lb))
    im_t, lb_t, raw_t = _cifar_record_set(4, 1, rng)
    (d / "test_batch.bin").write_bytes(raw_t)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (d / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
    train = open_dataset("cifar10", "train", data_dir=tmp_path)
    assert train.images.shape == (15, 3, 32, 32) and train.classes == names
    assert np.array_equal(train.images.numpy(), np.concatenate([p[0] for p in parts]))  # R, G, B planes in order
    assert np.array_equal(train.labels.numpy(), np.concatenate([p[1][:, 0] for p in parts]))
    test = load_cifar_binary(tmp_path, "test")
    assert np.array_equal(test.images.numpy(), im_t) and np.array_equal(test.labels.numpy(), lb_t[:, 0])
    (d / "test_batch.bin").write_bytes(raw_t[:-5])
    with pytest.raises(ValueError, match="not a whole number"):
        load_cifar_binary(d, "test")
    (d / "data_batch_3.bin").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3.bin"):
        load_cifar_binary(d, "train")


def test_cifar100_binary_fine_and_coarse_labels(tmp_path):
    rng = np.random.default_rng(1)
    im, lb, raw = _cifar_record_set(6, 2, rng)
    (tmp_path / "train.bin").write_bytes(raw)
    (tmp_path / "fine_label_names.txt").write_text("\n".join(f"fine{i}" for i in range(100)))
    fine = open_dataset(str(tmp_path), "train")  # a path with .bin files is detected as CIFAR
    coarse = load_cifar_binary(tmp_path, "train", label="coarse")
    assert np.array_equal(fine.labels.numpy(), lb[:, 1]) and np.array_equal(coarse.labels.numpy(), lb[:, 0])
    assert fine.num_classes == 100 and fine.classes[3] == "fine3"
    assert coarse.num_classes == 20 and coarse.classes[0] == "0"  # no coarse names file: indices
    assert np.array_equal(fine.images.numpy(), im)
    with pytest.raises(FileNotFoundError, match="binary version"):
        load_cifar_binary(tmp_path / "missing")


def test_arrays_hwc_chw_float_and_npz_variants(tmp_path):
    rng = np.random.default_rng(2)
    chw = rng.integers(0, 256, (4, 3, 5, 6), dtype=np.uint8)
    y = np.array([0, 1, 2, 1])
    a = load_arrays(chw, y, ["a", "b", "c"])
    b = load_arrays(chw.transpose(0, 2, 3, 1), y)
    c = load_arrays(chw.astype(np.float32) / 255.0, torch.from_numpy(y))
    assert torch.equal(a.images, b.images) and torch.equal(a.images, c.images)
    assert b.classes == ["0", "1", "2"] and a.classes == ["a", "b", "c"]
    assert load_arrays(chw[:, 0], y).images.shape == (4, 1, 5, 6)
    np.savez(tmp_path / "d.npz", x=chw.transpose(0, 2, 3, 1), y=y, classes=np.array(["a", "b", "c"]))
    d = open_dataset(str(tmp_path / "d.npz"))
    assert torch.equal(d.images, a.images) and d.classes == ["a", "b", "c"]
    np.savez(tmp_path / "k.npz", x_train=chw, y_train=y, x_test=chw[:2], y_test=y[:2])
    assert len(load_npz(tmp_path / "k.npz", "train")) == 4 and len(load_npz(tmp_path / "k.npz", "test")) == 2
    np.savez(tmp_path / "bad.npz", pictures=chw)
    with pytest.raises(ValueError, match="expected arrays 'images'"):
        load_npz(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        load_arrays(chw.astype(np.float32), y)
    with pytest.raises(ValueError, match="there are 2 classes"):
        load_arrays(chw, y, ["a", "b"])
    with pytest.raises(ValueError, match="channels"):
        load_arrays(rng.integers(0, 255, (2, 5, 6, 7), dtype=np.uint8), [0, 1])


def test_train_dev_split_deterministic_stratified_disjoint():
    x = torch.arange(200, dtype=torch.int64).view(200, 1, 1, 1).to(torch.uint8)
    labels = torch.tensor([0] * 100 + [1] * 60 + [2] * 40)
    ds = ImageDataset(x, labels, ["a", "b", "c"])
    tr1, dev1 = train_dev_split(ds, 0.1, seed=3)
    torch.manual_seed(123)  # the global RNG must not matter
    tr2, dev2 = train_dev_split(ds, 0.1, seed=3)
    _, dev3 = train_dev_split(ds, 0.1, seed=4)
    assert torch.equal(dev1.images, dev2.images) and torch.equal(tr1.images, tr2.images)
    assert not torch.equal(dev1.images, dev3.images)
    assert len(dev1) == 20 and len(tr1) == 180 and dev1.class_counts() == [10, 6, 4]
    ids = set(tr1.images.flatten().tolist()) | set(dev1.images.flatten().tolist())
    assert len(ids) == 200 and tr1.classes == ds.classes
    with pytest.raises(ValueError, match="dev_fraction"):
        train_dev_split(ds, 1.5)


def test_digits_tiny_named_dataset_split():
    tr, te = open_dataset("digits", "train"), open_dataset("digits", "test")
    assert len(tr) + len(te) == 1797 and tr.images.shape[1:] == (1, 8, 8)
    assert int(tr.images.max()) == 255 and tr.num_classes == 10
    with pytest.raises(ValueError, match="split"):
        open_dataset("digits", "val")
