"""Image folders: every listed format and PIL mode converted, bad files reported and skipped or fatal."""
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitlab.data import image_to_array, load_image, load_image_folder, open_dataset


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _make_good_folder(root: Path) -> None:
    """Class 'a': colour formats; class 'b': gray/alpha/16-bit modes. Every image is 8x8 except one 10x12."""
    a, b = root / "a", root / "b"
    a.mkdir(parents=True)
    b.mkdir()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(a / "rgb.jpg", quality=95)
    Image.new("RGB", (8, 8), (10, 200, 10)).save(a / "rgb.webp", lossless=True)
    Image.new("RGB", (8, 8), (10, 10, 200)).save(a / "rgb.bmp")
    pal = Image.new("P", (8, 8), 1)
    pal.putpalette([0, 0, 0, 30, 60, 90] + [0] * 762)
    pal.save(a / "palette.gif")
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(a / "cmyk.jpg", quality=100)  # pure red in CMYK
    Image.new("RGB", (10, 12), (1, 2, 3)).save(a / "other_size.png")
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))  # fully transparent black: composited on white
    rgba.putpixel((0, 0), (10, 20, 30, 255))
    rgba.save(b / "rgba.png")
    Image.new("L", (8, 8), 77).save(b / "gray.png")
    Image.new("LA", (8, 8), (0, 0)).save(b / "la.png")
    Image.fromarray(np.full((8, 8), 257 * 100, dtype=np.uint16)).save(b / "i16.png")  # 16-bit gray
    Image.new("1", (8, 8), 1).save(b / "bilevel.bmp")
    ptr = Image.new("P", (8, 8), 0)
    ptr.putpalette([0, 0, 0, 5, 5, 5] + [0] * 762)
    ptr.info["transparency"] = 0
    ptr.save(b / "palette_transparent.png", transparency=0)


def _add_bad_files(root: Path) -> dict[str, str]:
    good_png = _png_bytes(Image.new("RGB", (8, 8), (1, 1, 1)))
    bad = {
        "a/corrupt.jpg": b"\xff\xd8\xff\xe0 this is not really a jpeg" * 3,
        "a/truncated.png": good_png[: len(good_png) // 2],
        "b/empty.png": b"",
        "b/fake.png": b"just some text, not an image\n",
        "b/notes.txt": b"labelling notes\n",
        "stray.png": good_png,
    }
    for rel, data in bad.items():
        (root / rel).write_bytes(data)
    return {
        "a/corrupt.jpg": "cannot read image", "a/truncated.png": "truncated", "b/empty.png": "empty",
        "b/fake.png": "not a recognised image", "b/notes.txt": "not an image file extension",
        "stray.png": "not inside a class folder",
    }


def test_every_mode_converted_to_rgb_with_documented_values(tmp_path):
    _make_good_folder(tmp_path)
    ds = load_image_folder(tmp_path, size=8)
    assert ds.classes == ["a", "b"] and ds.skipped == []
    assert ds.images.shape == (12, 3, 8, 8) and ds.class_counts() == [6, 6]
    px = {p.name: ds.images[i, :, 4, 4].tolist() for i, p in enumerate(sorted((tmp_path / "a").iterdir()))}
    assert px["palette.gif"] == [30, 60, 90]
    assert px["rgb.bmp"] == [10, 10, 200] and px["rgb.webp"] == [10, 200, 10]
    r, g_, b_ = px["cmyk.jpg"]
    assert r > 230 and g_ < 25 and b_ < 25
    assert px["other_size.png"] == [1, 2, 3]  # resized to 8x8
    bvals = {p.name: ds.images[6 + i] for i, p in enumerate(sorted((tmp_path / "b").iterdir()))}
    assert bvals["rgba.png"][:, 4, 4].tolist() == [255, 255, 255] and bvals["rgba.png"][:, 0, 0].tolist() == [10, 20, 30]
    assert bvals["i16.png"][:, 4, 4].tolist() == [100] * 3  # 16-bit scaled by 1/257
    assert bvals["gray.png"][:, 4, 4].tolist() == [77] * 3
    assert bvals["la.png"][:, 4, 4].tolist() == [255] * 3
    assert bvals["bilevel.bmp"][:, 4, 4].tolist() == [255] * 3
    assert bvals["palette_transparent.png"][:, 4, 4].tolist() == [255] * 3


def test_channels_and_size_options(tmp_path):
    _make_good_folder(tmp_path)
    gray = load_image_folder(tmp_path, size=(6, 4), channels=1)
    assert gray.images.shape == (12, 1, 6, 4)
    only_gray = tmp_path / "only_gray"
    (only_gray / "x").mkdir(parents=True)
    Image.new("L", (5, 7), 9).save(only_gray / "x" / "g1.png")
    Image.new("L", (3, 3), 9).save(only_gray / "x" / "g2.png")
    ds = load_image_folder(only_gray)  # size=None: first image's size; all gray: one channel
    assert ds.images.shape == (2, 1, 7, 5)


def test_bad_files_reported_and_skipped(tmp_path, capsys):
    _make_good_folder(tmp_path)
    expected = _add_bad_files(tmp_path)
    ds = load_image_folder(tmp_path, size=8, on_error="skip")
    assert len(ds) == 12
    reasons = {str(Path(p).relative_to(tmp_path)): why for p, why in ds.skipped}
    assert set(reasons) == set(expected)
    for rel, fragment in expected.items():
        assert fragment in reasons[rel], (rel, reasons[rel])
    err = capsys.readouterr().err
    assert "6 file(s)" in err and "corrupt.jpg" in err and "on_error='raise'" in err


def test_bad_files_fatal_with_raise_listing_them_all(tmp_path):
    _make_good_folder(tmp_path)
    _add_bad_files(tmp_path)
    with pytest.raises(ValueError) as e:
        load_image_folder(tmp_path, size=8, on_error="raise")
    msg = str(e.value)
    for name in ("corrupt.jpg", "truncated.png", "empty.png", "fake.png", "notes.txt", "stray.png"):
        assert name in msg


def test_cache_reused_until_a_file_changes(tmp_path, monkeypatch):
    import vitlab.data.sources.folder as datasets

    root = tmp_path / "imgs"
    _make_good_folder(root)
    cache = tmp_path / "cache" / "imgs.npz"
    first = load_image_folder(root, size=8, cache=cache)
    assert cache.is_file() and first.images[3, :, 0, 0].tolist() == [10, 10, 200]  # a/rgb.bmp
    Image.new("L", (8, 8), 1).save(root / "a" / "rgb.bmp")
    (root / "b" / "gray.png").unlink()
    again = load_image_folder(root, size=8, cache=cache)
    assert len(again) == 11 and again.images[3, :, 0, 0].tolist() == [1, 1, 1]

    def no_decoding(path):
        raise AssertionError(f"decoded {path} although the cache is valid")

    monkeypatch.setattr(datasets, "load_image", no_decoding)
    reread = load_image_folder(root, size=8, cache=cache)
    assert torch.equal(reread.images, again.images) and reread.classes == again.classes


def test_train_test_subfolders_and_empty_root(tmp_path):
    for split, color in (("train", 10), ("test", 20)):
        (tmp_path / split / "cat").mkdir(parents=True)
        Image.new("L", (4, 4), color).save(tmp_path / split / "cat" / "x.png")
    assert int(open_dataset(str(tmp_path), "train").images.max()) == 10
    assert int(open_dataset(str(tmp_path), "test").images.max()) == 20
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class subfolders"):
        load_image_folder(tmp_path / "empty")


def test_load_image_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.jpg"):
        load_image(tmp_path / "bad.jpg")
    arr = image_to_array(Image.new("RGBA", (2, 2), (0, 0, 0, 0)), channels=1)
    assert arr.shape == (2, 2) and arr.max() == 255


def test_cache_keeps_the_bad_file_report_and_survives_a_broken_cache(tmp_path, capsys):
    root = tmp_path / "imgs"
    _make_good_folder(root)
    _add_bad_files(root)
    cache = tmp_path / "c.npz"
    first = load_image_folder(root, size=8, cache=cache)
    capsys.readouterr()
    cached = load_image_folder(root, size=8, cache=cache)
    assert cached.skipped == first.skipped and "corrupt.jpg" in capsys.readouterr().err
    with pytest.raises(ValueError, match="truncated.png"):
        load_image_folder(root, size=8, cache=cache, on_error="raise")
    cache.write_bytes(b"PK\x03\x04 broken")
    rebuilt = load_image_folder(root, size=8, cache=cache)
    assert torch.equal(rebuilt.images, first.images) and "ignoring unreadable cache" in capsys.readouterr().err
