"""A new user's own image folders through the CLI: honest held-out splits, a model that fits the data,
odd and broken files named (never a crash), many-file prediction, missing optional packages."""
import builtins
import csv
import json
import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitlab.cli import main

TINY = ["model.depth=1", "model.embed_dim=16", "model.num_heads=2", "model.mlp_dim=16", "model.patch_size=8",
        "data.batch_size=8", "schedule.epochs=1", "train.log_every_steps=1"]


def _rgb_folder(root: Path, n: int = 10, size: int = 32, classes=("red", "green", "blue")) -> Path:
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(n):
            a = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
            a[..., c] += 150
            Image.fromarray(a).save(root / name / f"img{i}.png")
    return root


def _train(tmp_path, data, *extra, out="run"):
    return main(["train", "--out", str(tmp_path / out), "--no-progress", f"data.dataset={data}", *TINY, *extra])


def test_flat_folder_gets_a_disjoint_held_out_split_that_eval_reuses(tmp_path, capsys):
    data = _rgb_folder(tmp_path / "photos")
    assert _train(tmp_path, data) == 0
    out = capsys.readouterr().out
    assert "has no test split" in out.splitlines()[0] and "6 of its 30 images" in out  # said first
    run = tmp_path / "run"
    split = json.loads((run / "split.json").read_text())
    held = set(split["test_files"])
    assert len(held) == 6 and all(sum(f.startswith(c) for f in held) == 2 for c in ("red", "green", "blue"))
    final = json.loads((run / "final.json").read_text())
    assert final["split"] == "held-out test" and final["n"] == 6
    assert "6 train / " not in out and "24 train / 6 held-out test" in out

    assert main(["eval", str(run)]) == 0  # no --data: the run's own held-out images
    ev = capsys.readouterr().out
    assert "6 held-out test images" in ev and "images: 6" in ev
    assert f"top-1: {final['top1']:.2f}%" in ev
    # the same images after files are added to the folder: new files never become test images
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(data / "red" / "new.png")
    assert main(["eval", str(run), "--data", str(data)]) == 0
    assert "images: 6" in capsys.readouterr().out
    # resuming the run reads the same split back
    assert _train(tmp_path, data) == 0
    assert "read back from" in capsys.readouterr().out
    assert set(json.loads((run / "split.json").read_text())["test_files"]) == held
    # and asking the folder itself for a test split is refused instead of handing back training images
    assert main(["eval", str(run / "model"), "--data", str(data / "red" / "..")]) == 0  # same source, resolved
    assert main(["data", str(data), "--split", "test"]) == 2
    assert "no test split" in capsys.readouterr().err


def test_npz_without_test_part_is_held_out_by_rows(tmp_path, capsys):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", images=rng.integers(0, 255, (40, 16, 16), dtype=np.uint8), labels=np.arange(40) % 2)
    assert _train(tmp_path, tmp_path / "d.npz", "data.test_fraction=0.25", "model.patch_size=4") == 0
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert len(split["test_rows"]) == 10 and split["n_source"] == 40
    cfg = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert cfg["in_chans"] == 1 and list(cfg["img_size"]) == [16, 16]


def test_rgb_32_folder_trains_a_three_channel_32px_model(tmp_path, capsys):
    _rgb_folder(tmp_path / "ds" / "train")  # split folders: train/ and test/ of class folders
    _rgb_folder(tmp_path / "ds" / "test", n=3)
    assert _train(tmp_path, tmp_path / "ds") == 0
    out = capsys.readouterr().out
    assert "in_chans=3 (RGB, from the data), img_size=32x32 (from the data)" in out
    assert "30 train / 9 test" in out and not (tmp_path / "run" / "split.json").exists()
    cfg = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert cfg["in_chans"] == 3 and list(cfg["img_size"]) == [32, 32]

    assert _train(tmp_path, tmp_path / "ds", "model.in_chans=1", out="run2") == 2  # contradiction: an error naming both
    err = capsys.readouterr().err
    assert "model.in_chans=1" in err and "RGB, 3 channel(s)" in err
    _rgb_folder(tmp_path / "odd_size", size=30)  # 30 is no multiple of vit_mnist's patch 4 (TINY sets 8)
    assert main(["train", "--out", str(tmp_path / "run3"), f"data.dataset={tmp_path / 'odd_size'}"]) == 2
    assert "30x30, not a multiple of the patch size 4: set data.image_size (e.g. 32)" in capsys.readouterr().err


def _bomb_png(path: Path) -> None:
    """A valid PNG header claiming 100000 x 100000 pixels (10 gigapixels) with almost no data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def _odd_folder(root: Path) -> tuple[dict[str, str], int]:
    """Two class folders with good files of many kinds and one of each kind of bad file; returns
    {bad file name: expected reason} and the number of good files."""
    good = 0
    for c in ("a", "b"):
        d = root / c
        d.mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((20, 20, 3), 40 + 100 * (c == "b") + i, np.uint8)).save(d / f"rgb{i}.jpg")
        ramp = np.linspace(0, 65535, 400, dtype=np.uint16).reshape(20, 20)
        Image.fromarray(ramp).save(d / "sixteen.tif")  # mode I;16
        Image.fromarray(np.linspace(0, 1, 400, dtype=np.float32).reshape(20, 20)).save(d / "float.tiff")  # F
        Image.fromarray(np.full((20, 20, 3), 9, np.uint8)).save(d / "rgb.tif")
        Image.fromarray(np.full((20, 20), 200, np.uint8)).save(d / "grey.tif")
        Image.fromarray(np.full((20, 20, 3), 7, np.uint8)).save(d / "frame.ppm")  # any extension Pillow opens
        good += 3 + 5
    d = root / "a"
    (d / "gone.png").symlink_to(root / "nowhere.png")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(d / "locked.png")
    full = (root / "b" / "rgb0.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (d / "empty.png").write_bytes(b"")
    (d / "notes.png").write_text("this is text, not a picture")
    _bomb_png(d / "bomb.png")
    return {"gone.png": "dangling symlink", "locked.png": "permission denied", "truncated.jpg": "corrupt or truncated",
            "empty.png": "empty", "notes.png": "not a recognised image format",
            "bomb.png": "decompression bomb"}, good


@pytest.fixture
def locked(monkeypatch):
    """Make files named locked.* unreadable: chmod 000 where permissions apply; as root (who may read any
    file) by making open() fail the way the kernel would."""
    def lock(folder: Path) -> None:
        for p in folder.rglob("locked.*"):
            p.chmod(0)
        if os.geteuid() == 0:
            real_open = builtins.open

            def guarded(file, *a, **k):
                if isinstance(file, (str, os.PathLike)) and Path(file).name.startswith("locked."):
                    raise PermissionError(13, "Permission denied", str(file))
                return real_open(file, *a, **k)

            monkeypatch.setattr(builtins, "open", guarded)
    return lock


def test_odd_and_broken_files_are_named_and_training_finishes(tmp_path, capsys, locked):
    bad, n_good = _odd_folder(tmp_path / "odd")
    locked(tmp_path / "odd")
    assert main(["data", str(tmp_path / "odd"), "--size", "16"]) == 0
    out, err = capsys.readouterr()
    assert f"{n_good} images, 3x16x16" in out
    for name, why in bad.items():
        line = next((ln for ln in out.splitlines() if f"/{name}:" in ln), "")
        assert why in line, (name, out)
    assert "Traceback" not in err

    assert _train(tmp_path, tmp_path / "odd", "model.patch_size=4", "data.image_size=16",
                  "data.test_fraction=0.25") == 0
    out, err = capsys.readouterr()
    assert "done:" in out and all(name in err for name in bad)  # listed while loading, then trained
    assert main(["data", str(tmp_path / "odd"), "--on-error", "raise"]) == 2  # stopping is opt-in
    assert "bomb.png" in capsys.readouterr().err


def test_sixteen_bit_and_float_tiffs_are_scaled_to_8_bit(tmp_path):
    from vitlab.data import image_to_array, load_image

    ramp16 = np.array([[0, 65535]], dtype=np.uint16)
    Image.fromarray(ramp16).save(tmp_path / "i16.tif")
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)).save(tmp_path / "unit.tif")
    Image.fromarray(np.array([[-10.0, 0.0, 30.0]], np.float32)).save(tmp_path / "wide.tif")
    assert image_to_array(load_image(tmp_path / "i16.tif")).tolist() == [[0, 255]]
    assert image_to_array(load_image(tmp_path / "unit.tif")).tolist() == [[0, 128, 255]]
    assert image_to_array(load_image(tmp_path / "wide.tif")).tolist() == [[0, 64, 255]]


def test_predict_folders_and_globs_in_batches_to_csv_and_jsonl(tmp_path, capsys):
    data = _rgb_folder(tmp_path / "photos", n=3)
    assert _train(tmp_path, data, "data.batch_size=4", "data.test_fraction=0.34") == 0
    (data / "red" / "broken.png").write_text("not an image")
    capsys.readouterr()
    out_csv = tmp_path / "preds.csv"
    args = ["predict", str(tmp_path / "run"), str(data / "green"), str(data / "blue" / "*.png"),
            str(data / "red" / "broken.png"), str(tmp_path / "nothing" / "*.jpg"), "--out", str(out_csv),
            "--topk", "2", "--batch-size", "2"]
    assert main(args) == 1  # something was unusable
    out, err = capsys.readouterr()
    assert "broken.png" in err and "nothing" in err and "matched no files" in err
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 7 and "wrote" in out and "6 image(s) classified" in out
    good = [r for r in rows if not r["error"]]
    assert len(good) == 6 and all(r["class_1"] in ("red", "green", "blue") for r in good)
    assert all(abs(float(r["prob_1"]) + float(r["prob_2"])) <= 1.0001 for r in good)
    assert main(["predict", str(tmp_path / "run"), str(data / "blue"), "--out", str(tmp_path / "p.jsonl")]) == 0
    recs = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(recs) == 3 and all(len(r["top"]) == 3 and r["error"] is None for r in recs)


def test_missing_optional_package_is_one_line_not_a_traceback(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn -> ImportError
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert main(["data", "digits"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'vitlab[datasets]'" in err and "scikit-learn" in err


def test_train_data_dir_option_and_print_config(tmp_path, capsys):
    assert main(["train", "--print-config", "--data-dir", str(tmp_path), "data.test_fraction=0.1"]) == 0
    printed = capsys.readouterr().out
    assert f"data_dir: {tmp_path}" in printed and "test_fraction: 0.1" in printed and "on_error: skip" in printed
    assert main(["train", "data.dataset=fashion_mnist"]) == 2  # training needs --out
    assert "--out" in capsys.readouterr().err
