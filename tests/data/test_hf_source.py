"""Hugging Face `datasets` tables as a source: saved with save_to_disk (one split or a DatasetDict), a parquet
directory in the hub's layout, an imagefolder, other column names, class names from ClassLabel, rows
without labels left out, a hub name refused without downloading; a table trained on and packed to shards."""
import json

import pytest

datasets = pytest.importorskip("datasets", reason="the hf extra is not installed: pip install 'vitlab[hf]'")
wds = pytest.importorskip("webdataset", reason="webdataset (in the test extra) checks the shard format")

from vitlab.cli import main  # noqa: E402
from vitlab.data import has_test_split, open_dataset  # noqa: E402
from vitlab.data.pack import pack  # noqa: E402
from vitlab.errors import NoTestSplitError  # noqa: E402
from vitlab.train import load_config, train  # noqa: E402


@pytest.fixture(autouse=True)
def _offline_cache(tmp_path, monkeypatch):  # datasets' conversion cache and vitlab's indexes stay in the test's dir
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _table(folder, classes=("class0", "class1", "class2"), image="image", label="label", unlabelled=0):
    """Rows of (encoded JPEG bytes, ClassLabel) from a class folder, as a datasets.Dataset."""
    files = sorted(folder.glob("class*/*.jpg"))
    rows = {image: [{"bytes": f.read_bytes(), "path": None} for f in files],
            label: [int(f.parent.name[len("class"):]) for f in files]}
    for i in range(unlabelled):
        rows[label][i] = -1
    feats = datasets.Features({image: datasets.Image(), label: datasets.ClassLabel(names=list(classes))})
    return datasets.Dataset.from_dict(rows, features=feats), files


@pytest.fixture
def folder(tmp_path, make_folder):
    return make_folder(tmp_path / "photos", per_class=8)


def test_a_saved_dataset_is_read_lazily_with_its_class_names(tmp_path, folder):
    table, files = _table(folder, classes=("cat", "dog", "eel"), unlabelled=2)
    table.save_to_disk(str(tmp_path / "saved"))
    src = open_dataset(str(tmp_path / "saved"))
    assert not src.in_memory and src.classes == ["cat", "dog", "eel"] and src.channels == 3
    assert len(src) == len(files) - 2 and [n for n, _ in src.skipped] == [f"{tmp_path / 'saved'}:train[row {i}]"
                                                                             for i in (0, 1)]
    assert src.read_bytes(0) == files[2].read_bytes() and int(src.labels[0]) == 0  # bytes as stored, not decoded
    sub = src.subset([3, 5])
    assert sub.read_bytes(1) == files[7].read_bytes() and sub.name(0).endswith("[row 5]")
    assert not has_test_split(str(tmp_path / "saved"))
    with pytest.raises(NoTestSplitError):
        open_dataset(str(tmp_path / "saved"), "test")


def test_a_dataset_dict_keeps_its_splits_and_a_parquet_directory_works(tmp_path, folder, make_folder):
    table, files = _table(folder)
    val, vfiles = _table(make_folder(tmp_path / "more", per_class=2, seed=1))
    datasets.DatasetDict({"train": table, "validation": val}).save_to_disk(str(tmp_path / "dd"))
    assert has_test_split(str(tmp_path / "dd"))
    assert len(open_dataset(str(tmp_path / "dd"), "test")) == len(vfiles)
    (tmp_path / "pq" / "data").mkdir(parents=True)  # the hub's layout: data/<split>-00000-of-00001.parquet
    table.rename_columns({"image": "img", "label": "y"}).to_parquet(str(tmp_path / "pq/data/train-00000-of-00001.parquet"))
    val.rename_columns({"image": "img", "label": "y"}).to_parquet(str(tmp_path / "pq/data/test-00000-of-00001.parquet"))
    src = open_dataset(str(tmp_path / "pq"))  # the one Image column, the one ClassLabel column
    assert len(src) == len(files) and src.read_bytes(4) == files[4].read_bytes()
    assert src.classes == table.features["label"].names
    assert len(open_dataset(f"hf:{tmp_path / 'pq'}?image=img&label=y", "test")) == len(vfiles)
    with pytest.raises(ValueError, match=r"no column 'label'.*\?label=COLUMN"):
        open_dataset(f"hf:{tmp_path / 'pq'}?label=label")
    with pytest.raises(ValueError, match="unknown option"):
        open_dataset(f"hf:{tmp_path / 'pq'}?images=img")


def test_an_imagefolder_through_hf_prefix(folder):
    src = open_dataset(f"hf:{folder}")
    assert len(src) == 24 and src.classes == ["class0", "class1", "class2"]
    assert sorted(src.read_bytes(i) for i in range(len(src))) == sorted(f.read_bytes() for f in folder.glob("*/*.jpg"))


def test_a_hub_name_is_refused_without_downloading():
    with pytest.raises(FileNotFoundError, match="downloads nothing.*save_to_disk"):
        open_dataset("hf:someone/imagenet-21k")
    assert main(["data", "hf:someone/imagenet-21k"]) == 2


def test_training_on_a_saved_dataset_and_packing_it(tmp_path, folder):
    table, files = _table(folder)
    table.save_to_disk(str(tmp_path / "saved"))
    args = [f"data.dataset={tmp_path / 'saved'}", "data.in_memory=false", "data.workers=1", "data.batch_size=6",
            "data.normalize=minus1_1", "model.name=vit_mnist", "model.img_size=16", "model.patch_size=4",
            "model.embed_dim=16", "model.depth=1", "model.num_heads=2", "model.mlp_dim=32", "schedule.epochs=1",
            "train.threads=1"]
    res = train(load_config(None, args), tmp_path / "run", progress=False)
    assert res.step == 3  # 24 rows, 5 held out by row number (split.json), 19 // 6 = 3 steps
    saved = json.loads((tmp_path / "run" / "split.json").read_text())
    assert saved["source"] == str((tmp_path / "saved").resolve()) and len(saved["test_rows"]) == 5
    assert json.loads((tmp_path / "run" / "final.json").read_text())["n"] == 5
    assert main(["data", "pack", str(tmp_path / "saved"), str(tmp_path / "sh"), "--shard-size", "10"]) == 0
    got = list(wds.WebDataset([str(p) for p in sorted((tmp_path / "sh").glob("*.tar"))], shardshuffle=False))
    assert sorted(s["jpg"] for s in got) == sorted(f.read_bytes() for f in files)
    assert sorted(s["__key__"] for s in got) == [f"{i:08d}" for i in range(len(files))]


def test_string_and_plain_integer_labels(tmp_path, folder):
    files = sorted(folder.glob("class*/*.jpg"))[:6]
    img = [{"bytes": f.read_bytes(), "path": None} for f in files]
    feats = {"image": datasets.Image()}
    datasets.Dataset.from_dict({"image": img, "label": ["eel", "cat", None, "cat", "dog", "eel"]},
                               features=datasets.Features({**feats, "label": datasets.Value("string")})
                               ).save_to_disk(str(tmp_path / "s"))
    src = open_dataset(str(tmp_path / "s"))
    assert src.classes == ["cat", "dog", "eel"] and src.labels.tolist() == [2, 0, 0, 1, 2] and len(src.skipped) == 1
    pack(src, tmp_path / "sh", 10, seed=None)  # keys are the table's rows: row 2 (no label) is not there
    assert sorted(open_dataset(str(tmp_path / "sh")).paths) == ["00000000", "00000001", "00000003", "00000004",
                                                               "00000005"]
    datasets.Dataset.from_dict({"image": img, "y": [3, 0, 1, 3, None, 0]},
                               features=datasets.Features({**feats, "y": datasets.Value("int64")})
                               ).save_to_disk(str(tmp_path / "i"))
    src = open_dataset(f"hf:{tmp_path / 'i'}?label=y")
    assert src.classes == ["0", "1", "2", "3"] and src.labels.tolist() == [3, 0, 1, 3, 0]
