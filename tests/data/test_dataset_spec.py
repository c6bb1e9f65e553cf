"""DatasetSpec: every kind is detected, opened, asked for its test split and written in a canonical form
that parses back to the same data from another directory; prefixes settle the ambiguous cases; a run's
start looks a Hugging Face table's splits up once."""
import json
import struct

import numpy as np
import pytest

from vitlab.data import DatasetSpec, open_dataset
from vitlab.data import spec as spec_mod
from vitlab.data.pack import pack
from vitlab.data.splits import open_run_data
from vitlab.errors import NoTestSplitError


def _idx(path, arr):
    code = {1: 1, 3: 3}[arr.ndim]
    path.write_bytes(bytes([0, 0, 8, code]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes())


def _make(kind, root, make_folder):
    """A small data set of `kind` under `root`; returns (spec text, has a test split, images in train)."""
    rng = np.random.default_rng(0)
    if kind == "npz":
        np.savez(root / "d.npz", x_train=rng.integers(0, 256, (6, 8, 8), dtype=np.uint8), y_train=np.arange(6) % 2,
                 x_test=rng.integers(0, 256, (2, 8, 8), dtype=np.uint8), y_test=np.arange(2))
        return str(root / "d.npz"), True, 6
    if kind == "idx":
        (root / "idx").mkdir()
        _idx(root / "idx/train-images-idx3-ubyte", rng.integers(0, 256, (5, 28, 28)))
        _idx(root / "idx/train-labels-idx1-ubyte", np.arange(5) % 10)
        return str(root / "idx"), False, 5
    if kind == "cifar":
        (root / "cifar").mkdir()
        for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
            recs = rng.integers(0, 256, (2, 3073), dtype=np.uint8)
            recs[:, 0] %= 10
            (root / "cifar" / name).write_bytes(recs.tobytes())
        return str(root / "cifar"), True, 10
    if kind == "folder":
        make_folder(root / "photos" / "train", per_class=3)
        make_folder(root / "photos" / "val", per_class=1, seed=1)
        return str(root / "photos"), True, 9
    if kind == "shards":
        pack(open_dataset(str(make_folder(root / "src", per_class=4))), root / "sh", 5, seed=0)
        return str(root / "sh"), False, 12
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["npz", "idx", "cifar", "folder", "shards"])
def test_each_kind_is_detected_opened_and_written_canonically(kind, tmp_path, make_folder, monkeypatch):
    text, has_test, n = _make(kind, tmp_path, make_folder)
    spec = DatasetSpec.parse(text)
    assert spec.kind.name == kind and not spec.named and str(spec) == text
    assert spec.has_test_split() is has_test and len(spec.open("train")) == n
    if not has_test:
        with pytest.raises(NoTestSplitError, match="has no test split"):
            spec.open("test")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the canonical form reads the same data from any directory
    again = DatasetSpec.parse(spec.canonical)
    assert again == spec and again.canonical == spec.canonical and again.kind is spec.kind
    assert len(again.open("train")) == n


def test_named_sets_ignore_case_and_dashes_and_keep_their_name():
    spec = DatasetSpec.parse("Fashion-MNIST")
    assert spec.named and spec.target == "fashion_mnist" and spec.canonical == "Fashion-MNIST"
    assert spec == DatasetSpec.parse("fashion_mnist") and spec.has_test_split()
    with pytest.raises(FileNotFoundError, match="neither a known name"):
        DatasetSpec.parse("no-such-set")


def test_prefixes_settle_ambiguous_folders(tmp_path, make_folder):
    """A class folder that also holds tar shards reads as shards without a prefix; folder: reads the images,
    and the canonical form keeps the prefix only where the path alone would be read as another kind."""
    root = make_folder(tmp_path / "both", per_class=2)
    pack(open_dataset(str(root)), root, 100, seed=0)  # shard-000000.tar beside the class folders
    assert DatasetSpec.parse(str(root)).kind.name == "shards"
    folder = DatasetSpec.parse(f"folder:{root}")
    assert folder.kind.name == "folder" and folder.canonical == f"folder:{root.resolve()}"
    assert DatasetSpec.parse(folder.canonical) == folder and len(folder.open()) == 6
    for prefix in ("wds:", "shards:"):
        assert DatasetSpec.parse(f"{prefix}{root}") == DatasetSpec.parse(str(root))
    plain = make_folder(tmp_path / "plain", per_class=1)
    given = DatasetSpec.parse(f"folder:{plain}")
    assert given.canonical == str(plain.resolve()) and given == DatasetSpec.parse(str(plain))  # prefix not needed


def test_hf_tables_are_a_kind_and_a_run_looks_their_splits_up_once(tmp_path, make_folder, monkeypatch):
    datasets = pytest.importorskip("datasets", reason="the hf extra is not installed: pip install 'vitlab[hf]'")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    files = sorted(make_folder(tmp_path / "photos", per_class=4).glob("class*/*.jpg"))
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b", "c"])})
    rows = {"image": [{"bytes": f.read_bytes(), "path": None} for f in files],
            "label": [int(f.parent.name[-1]) for f in files]}
    table = datasets.Dataset.from_dict(rows, features=feats)
    datasets.DatasetDict({"train": table, "test": table.select(range(3))}).save_to_disk(str(tmp_path / "dd"))
    calls = []
    real = spec_mod.load_hf_splits
    monkeypatch.setattr(spec_mod, "load_hf_splits", lambda path: calls.append(path) or real(path))
    spec = DatasetSpec.parse(str(tmp_path / "dd"))
    assert spec.kind.name == "hf" and spec.canonical == str((tmp_path / "dd").resolve())
    run = open_run_data(spec, tmp_path / "run")
    assert (len(run.train), len(run.test), run.held_out) == (12, 3, False) and len(calls) == 1
    prefixed = DatasetSpec.parse(f"hf:{tmp_path / 'dd'}?label=label")
    assert prefixed.canonical == f"hf:{(tmp_path / 'dd').resolve()}?label=label"
    assert DatasetSpec.parse(prefixed.canonical) == prefixed
    assert DatasetSpec.parse(f"hf:{tmp_path / 'photos'}").kind.name == "hf"  # datasets' imagefolder builder


def test_split_json_records_the_canonical_form_and_a_prefixed_spec_reads_it_back(tmp_path, make_folder, monkeypatch):
    root = make_folder(tmp_path / "flat", per_class=5)
    monkeypatch.chdir(tmp_path)
    run = open_run_data("flat", tmp_path / "run", 0.2, seed=0)
    saved = json.loads((tmp_path / "run" / "split.json").read_text())
    assert saved["source"] == str(root.resolve()) and run.held_out
    again = open_run_data(f"folder:{root}", tmp_path / "run", 0.2, seed=0, write=False)  # the same data, prefixed
    assert "read back from" in again.notes[0] and list(again.test.paths) == list(run.test.paths)
