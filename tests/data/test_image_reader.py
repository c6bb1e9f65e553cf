"""One image reader for every caller: decode_image (serve), load_image (folders decoded into memory, predict) and
the pipeline's open_oriented / decode_preprocess (streaming training and evaluation) share one pixel limit,
one EXIF orientation rule and one wording for what they cannot read."""
import io

import numpy as np
import pytest
from PIL import Image

from vitlab.data import ImageTooLargeError, Preprocess, decode_image, load_image, load_image_folder
from vitlab.data.pipeline import decode_preprocess, open_oriented
from vitlab.data.sources.images import to_l_or_rgb

PRE = Preprocess((8, 8))


def _jpeg(h: int, w: int, orientation: int = 1) -> bytes:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[: h // 2, : w // 3] = (250, 10, 10)  # a red block top left: where it ends up shows the turn
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=95, exif=exif)
    return buf.getvalue()


def _readers(tmp_path, data: bytes):
    """Each caller's way of reading `data` (named x.jpg), returning a PIL image or an array."""
    path = tmp_path / "x.jpg"
    path.write_bytes(data)
    return {
        "decode_image": lambda: decode_image(io.BytesIO(data), "x.jpg"),
        "load_image": lambda: load_image(path),
        "open_oriented": lambda: open_oriented(data, "x.jpg")[0],
        "decode_preprocess": lambda: decode_preprocess(data, "x.jpg", 3, PRE),
    }


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow warns at its limit; the reader refuses
def test_one_pixel_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20 * 30 - 1)
    for name, read in _readers(tmp_path, _jpeg(20, 30)).items():
        with pytest.raises(ImageTooLargeError, match=r"cannot read image .*x\.jpg: 30x20 = 600 pixels.*the limit is 599"):
            read()
    with pytest.raises(ImageTooLargeError, match="the limit is 10"):  # an explicit limit (serve's) wins
        decode_image(io.BytesIO(_jpeg(20, 30)), "x.jpg", max_pixels=10)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20 * 30)
    for name, read in _readers(tmp_path, _jpeg(20, 30)).items():
        assert read() is not None, name


def test_one_orientation_rule(tmp_path):
    """A phone photo stored 20 high x 30 wide with EXIF orientation 6 (turn 90 degrees clockwise) comes out
    30 high x 20 wide through every reader, with the same pixels."""
    readers = _readers(tmp_path, _jpeg(20, 30, orientation=6))
    upright = np.asarray(readers["decode_image"]())
    assert upright.shape == (30, 20, 3) and upright[:10, 12:].mean() > upright[:10, :8].mean()  # red moved right
    assert np.array_equal(np.asarray(readers["load_image"]()), upright)
    assert np.array_equal(np.asarray(readers["open_oriented"]()), upright)
    expect = np.asarray(PRE.resize_pil(to_l_or_rgb(Image.fromarray(upright), 3)))
    assert np.array_equal(readers["decode_preprocess"](), expect)
    im, as_stored = open_oriented(_jpeg(20, 30), "y.jpg")
    assert as_stored and im.size == (30, 20)  # upright: not decoded yet, so a JPEG may be drafted smaller


@pytest.mark.parametrize("data, words", [(b"just some text", "not a recognised image format"),
                                         (_jpeg(40, 40)[:300], "corrupt or truncated")])
def test_one_error_wording(tmp_path, data, words):
    for name, read in _readers(tmp_path, data).items():
        with pytest.raises(ValueError, match=rf"^cannot read image .*x\.jpg: {words}"):
            read()
    (tmp_path / "set" / "a").mkdir(parents=True)
    (tmp_path / "set" / "a" / "bad.jpg").write_bytes(data)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "set" / "a" / "good.png")
    ds = load_image_folder(tmp_path / "set", report=False)
    assert [why.startswith("cannot read image") and words in why for _, why in ds.skipped] == [True]
