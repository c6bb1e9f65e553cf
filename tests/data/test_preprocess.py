"""The one test-time preprocessing definition (vitlab.data.Preprocess): the geometry of "whole" and
"shorter" on a non-square image with a known pattern, timm's arithmetic, resize_batch against resize_pil,
modes, and the errors that name a bad value."""
import numpy as np
import pytest
import torch
from PIL import Image

import vitlab
from vitlab.data import EvalTransform, Preprocess


def _ramps(h: int = 40, w: int = 80) -> np.ndarray:
    """(h, w, 3) uint8: red = 3 x column, green = 6 x row, blue 0. A resize maps a ramp to a ramp, so each
    output pixel says where in the original it was taken from."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 0] = 3 * np.arange(w)[None, :]
    arr[..., 1] = 6 * np.arange(h)[:, None]
    return arr


def _both(pre: Preprocess, arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """resize_pil and resize_batch of one (h, w, 3) image, as float (h', w', 3)."""
    pil = np.asarray(pre.resize_pil(Image.fromarray(arr)), dtype=np.float64)
    batch = pre.resize_batch(torch.from_numpy(arr).permute(2, 0, 1)[None].contiguous())[0].permute(1, 2, 0).double()
    return pil, batch.numpy()


@pytest.mark.parametrize("which", ["pil", "batch"])
def test_shorter_keeps_the_aspect_ratio_and_crops_the_centre(which):
    arr = _ramps()  # 40 x 80
    out = dict(zip(("pil", "batch"), _both(Preprocess(20, "shorter"), arr)))[which]
    assert out.shape == (20, 20, 3)
    # Shorter side 40 -> 20: both axes scaled by 1/2 (aspect kept), the 20 x 40 result cropped to its middle
    # 20 columns, i.e. original columns 20..60. Output column j samples original x = 2j + 20.5, row r y = 2r + 0.5.
    j, r = np.arange(20), np.arange(1, 19)  # rows 0 and 19 touch the image border (the filter is cut there)
    np.testing.assert_allclose(out[:, :, 0], np.broadcast_to(3 * (2 * j + 20.5), (20, 20)), atol=1)
    np.testing.assert_allclose(out[1:19, :, 1], np.broadcast_to((6 * (2 * r + 0.5))[:, None], (18, 20)), atol=1)
    # "whole" squashes instead: x scaled by 1/4, y by 1/2, nothing cropped.
    whole = dict(zip(("pil", "batch"), _both(Preprocess(20, "whole"), arr)))[which]
    np.testing.assert_allclose(whole[:, 1:19, 0], np.broadcast_to(3 * (4 * j[1:19] + 1.5), (20, 18)), atol=1)
    np.testing.assert_allclose(whole[1:19, :, 1], out[1:19, :, 1], atol=1)


def test_crop_pct_crops_the_centre_of_the_scaled_image_exactly():
    arr = _ramps()  # 40 x 80: at crop_pct 0.5 the scaled size is 40, which the image already has
    for resize, (top, left) in (("shorter", (10, 30)), ("whole", (10, 10))):
        pre = Preprocess(20, resize, crop_pct=0.5)
        pil, batch = _both(pre, arr)
        if resize == "shorter":  # no resize at all: the crop is the original's middle pixels
            np.testing.assert_array_equal(pil, arr[top : top + 20, left : left + 20])
        assert pre.crop_box(40, 80) == ((30.0, 10.0, 50.0, 30.0) if resize == "shorter" else (20.0, 10.0, 60.0, 30.0))
        np.testing.assert_array_equal(pil, batch)


def test_timm_arithmetic_for_a_non_square_photo():
    # timm's eval transform at 224, crop_pct 0.875: Resize(256) (the longer side int()-truncated) + CenterCrop(224)
    pre = Preprocess(224, "shorter", crop_pct=0.875, interpolation="bicubic")
    assert pre.scaled_size == (256, 256)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 412, 3), dtype=np.uint8))
    # 351 = int(256 * 412 / 300) (351.57), the left offset round((351 - 224) / 2) = round(63.5) = 64
    ref = img.resize((351, 256), Image.Resampling.BICUBIC).crop((64, 16, 288, 240))
    assert np.array_equal(np.asarray(pre.resize_pil(img)), np.asarray(ref))
    assert Preprocess(224, "shorter", crop_pct=224 / 400).scaled_size == (400, 400)  # 224 / (224 / 400) = 399.99...


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize("resize", ["whole", "shorter"])
def test_resize_batch_matches_resize_pil(resize, interpolation):
    """The same definition on tensors: on noise (the worst case for rounding) at reductions, enlargements
    and both at once (PIL's pass order), at most 2 levels of 255 apart, under 1% of the values differing."""
    rng = np.random.default_rng(1)
    diffs = []
    for (h, w), size, chans in [((37, 53), 16, 3), ((300, 420), 224, 3), ((16, 16), (37, 29), 3),
                                ((28, 28), 16, 1), ((20, 30), 28, 1), ((60, 45), 48, 3), ((24, 24), 24, 3)]:
        pre = Preprocess(size, resize, 0.875 if resize == "shorter" else 1.0, interpolation)
        x = rng.integers(0, 256, (2, chans, h, w), dtype=np.uint8)
        batch = pre.resize_batch(torch.from_numpy(x)).numpy()
        assert batch.dtype == np.float32 and batch.shape == (2, chans, *pre.img_size)
        for i in range(2):
            img = Image.fromarray(x[i, 0] if chans == 1 else x[i].transpose(1, 2, 0))
            pil = np.asarray(pre.resize_pil(img), dtype=np.float32).reshape(*pre.img_size, chans).transpose(2, 0, 1)
            diffs.append(np.abs(batch[i] - pil).ravel())
    d = np.concatenate(diffs)
    assert d.max() <= 2 and (d > 0).mean() < 0.01, (d.max(), (d > 0).mean())


def test_resize_pil_gives_exactly_the_size_in_the_images_mode():
    pre = Preprocess((12, 20), "shorter", 0.9, "bicubic")
    for mode in ("L", "RGB", "RGBA", "F", "I;16"):
        out = pre.resize_pil(Image.new(mode, (33, 17)))
        assert out.size == (20, 12) and out.mode == mode
    with pytest.raises(ValueError, match="'P' image .* convert it first"):
        pre.resize_pil(Image.new("P", (33, 17)))
    with pytest.raises(ValueError, match="uint8 image batch"):
        pre.resize_batch(torch.zeros(1, 3, 8, 8))


def test_bad_values_are_refused_by_name():
    with pytest.raises(ValueError, match=r"^resize='squash' is not one of \('whole', 'shorter'\)"):
        Preprocess(8, resize="squash")
    for bad in (0, 1.5, True, "0.9"):
        with pytest.raises(ValueError, match=r"crop_pct=.* must be a number in \(0, 1\]"):
            Preprocess(8, crop_pct=bad)
    with pytest.raises(ValueError, match=r"interpolation='nearest' is not one of \('bilinear', 'bicubic'\)"):
        Preprocess(8, interpolation="nearest")
    with pytest.raises(ValueError, match=r"^eval_resize='squash'"):
        vitlab.ViTConfig(eval_resize="squash")
    with pytest.raises(ValueError, match=r"^eval_crop_pct=0"):
        vitlab.models.ResNetConfig(eval_crop_pct=0)
    cfg = vitlab.ViTConfig()
    cfg.eval_interpolation = "lanczos"  # set after construction: from_config still names the field
    with pytest.raises(ValueError, match=r"ViTConfig.eval_interpolation='lanczos'"):
        Preprocess.from_config(cfg)


def test_eval_transform_for_model_is_the_models_preprocess_then_its_normalisation():
    cfg = vitlab.ViTConfig(img_size=(12, 20), patch_size=4, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3),
                           eval_resize="shorter", eval_crop_pct=0.8, eval_interpolation="bicubic")
    tf = EvalTransform.for_model(cfg)
    assert tf.preprocess == Preprocess((12, 20), "shorter", 0.8, "bicubic")
    arr = np.random.default_rng(2).integers(0, 256, (31, 23, 3), dtype=np.uint8)
    by_hand = np.asarray(tf.preprocess.resize_pil(Image.fromarray(arr)), dtype=np.float32) / 255
    by_hand = torch.from_numpy((by_hand - np.array(cfg.mean, np.float32)) / np.array(cfg.std, np.float32)).permute(2, 0, 1)
    torch.testing.assert_close(tf.image(Image.fromarray(arr)), by_hand)
    batch = tf(torch.from_numpy(arr).permute(2, 0, 1)[None].contiguous())[0]
    assert batch.shape == (3, 12, 20) and (batch - by_hand).abs().max() <= 2 / 255 / 0.2 + 1e-6  # resize_batch's rounding
    with pytest.raises(ValueError, match="already at"):
        tf.normalize(torch.zeros(1, 3, 31, 23, dtype=torch.uint8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_resize_batch_on_cuda_gives_the_cpu_result(interpolation):
    pre = Preprocess(24, "shorter", 0.875, interpolation)
    x = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (4, 3, 37, 53), dtype=np.uint8))
    d = (pre.resize_batch(x.cuda()).cpu() - pre.resize_batch(x)).abs()
    assert d.max() <= 1 and (d > 0).float().mean() < 0.01  # float rounding may flip a half-level
