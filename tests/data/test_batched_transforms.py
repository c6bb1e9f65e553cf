"""Batched transforms: shapes, ranges, reproducibility, crop/flip geometry, RandAugment ops against PIL,
random erasing, mixup/cutmix targets, and preprocessing of arbitrary PIL images."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from vitlab.data import NORMALIZE, EvalTransform, Mixup, TrainTransform, get_normalize


def _batch(b=8, c=1, h=12, w=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, c, h, w), dtype=torch.uint8, generator=g)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_minus1_1_is_official_scaling_and_presets_handle_one_channel():
    x = _batch(c=1)
    out = EvalTransform(12)(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, (x.float() - 127.5) / 127.5)
    x3 = _batch(c=3)
    m, s = get_normalize("imagenet")
    out3 = EvalTransform(12, m, s)(x3)
    torch.testing.assert_close(out3[:, 1], (x3[:, 1].float() / 255 - 0.456) / 0.224)
    with pytest.raises(ValueError, match="1 channel"):
        EvalTransform(12, m, s)(x)
    assert EvalTransform(12, m, s, in_chans=3)(x).shape == (8, 3, 12, 12)  # gray -> RGB for an RGB model
    assert EvalTransform(12, *NORMALIZE["fashion_mnist"])(x).shape == (8, 1, 12, 12)
    with pytest.raises(ValueError, match="unknown normalisation"):
        get_normalize("imagenette")


def test_train_shapes_ranges_and_seeded_reproducibility():
    x = _batch(b=16, c=3, h=20, w=16)
    tf = TrainTransform((24, 12), randaugment=(2, 9), random_erasing=0.5)
    a, b = tf(x, _gen(5)), tf(x, _gen(5))
    c = tf(x, _gen(6))
    assert a.shape == (16, 3, 24, 12) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    plain = TrainTransform((24, 12))(x, _gen(5))
    assert plain.min() >= -1.0 and plain.max() <= 1.0  # no erasing noise: stays within [-1, 1]
    with pytest.raises(ValueError, match="uint8"):
        tf(x.float(), _gen())


def test_full_crop_without_flip_equals_plain_resize():
    x = _batch(b=4, c=3, h=10, w=10)
    tf = TrainTransform(17, scale=(1.0, 1.0), flip=False)
    ref = (F.interpolate(x.float(), size=(17, 17), mode="bilinear", align_corners=False) - 127.5) / 127.5
    torch.testing.assert_close(tf(x, _gen()), ref, atol=1e-4, rtol=0)
    # the test-time resize is the same filter in PIL's two passes, each rounded to whole levels: within 1 level
    torch.testing.assert_close(EvalTransform(17)(x), ref, atol=1 / 127.5 + 1e-6, rtol=0)


def test_flip_mirrors_whole_samples_about_half_the_time():
    x = _batch(b=64, h=9, w=9)
    out = TrainTransform(9, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=True)(x, _gen(1))
    ref = EvalTransform(9)(x)
    same = (out - ref).abs().amax(dim=(1, 2, 3)) < 1e-4
    mirrored = (out - ref.flip(-1)).abs().amax(dim=(1, 2, 3)) < 1e-4
    assert bool((same ^ mirrored).all())  # each sample is exactly one of the two
    assert 16 <= int(mirrored.sum()) <= 48


def test_crop_boxes_respect_scale_and_content_is_the_box():
    tf = TrainTransform(20, scale=(0.25, 0.25), ratio=(1.0, 1.0), flip=False)
    boxes = tf.crop_params(32, 40, 40, _gen(3))
    assert torch.equal(boxes[:, 2:], torch.full((32, 2), 20.0, dtype=torch.float64))
    assert bool(((boxes[:, :2] >= 0) & (boxes[:, :2] <= 20)).all())
    x = _batch(b=32, h=40, w=40)
    out = tf(x, _gen(3))  # the crop box is the first thing drawn from the generator
    for i, (top, left, _, _) in enumerate(boxes.long().tolist()):
        expected = (x[i, :, top : top + 20, left : left + 20].float() - 127.5) / 127.5
        torch.testing.assert_close(out[i], expected, atol=1e-4, rtol=0)
    areas = TrainTransform(8, scale=(0.05, 1.0)).crop_params(500, 30, 50, _gen(4))
    frac = areas[:, 2] * areas[:, 3] / (30 * 50)
    assert frac.min() >= 0.04 and frac.max() <= 1.0 and frac.std() > 0.1


@pytest.mark.parametrize(
    "op, pil_fn, atol",
    [
        ("equalize", ImageOps.equalize, 0),
        ("autocontrast", ImageOps.autocontrast, 1),
        ("posterize", lambda im: ImageOps.posterize(im, 8 - int(0.8 * 4)), 0),
        ("solarize", lambda im: ImageOps.solarize(im, 256 - 0.8 * 256), 0),
        ("invert", ImageOps.invert, 0),
    ],
)
def test_colour_ops_match_pil(op, pil_fn, atol):
    x = (_batch(b=6, c=3, h=16, w=16).float() * 0.6 + 40).to(torch.uint8)  # not full range: autocontrast acts
    tf = TrainTransform(16, scale=(1, 1), ratio=(1, 1), flip=False, mean=(0,), std=(1 / 255,),
                        randaugment=(1, 8), ops=(op,))
    out = tf(x, _gen())
    for i in range(len(x)):
        ref = np.asarray(pil_fn(Image.fromarray(x[i].permute(1, 2, 0).numpy())), dtype=np.float32)
        np.testing.assert_allclose(out[i].permute(1, 2, 0).numpy(), ref, atol=atol + 1e-3)


def test_magnitude_zero_blends_and_geometry_are_identity():
    x = _batch(b=8, c=3)
    ops = ("brightness", "contrast", "color", "sharpness", "rotate", "shear_x", "shear_y", "translate_x", "translate_y")
    tf = TrainTransform(12, scale=(1, 1), ratio=(1, 1), flip=False, randaugment=(3, 0), ops=ops)
    torch.testing.assert_close(tf(x, _gen()), EvalTransform(12)(x), atol=1e-4, rtol=0)


def test_translate_fills_outside_band_and_rotate_fills_corners():
    x = torch.full((4, 1, 20, 20), 200, dtype=torch.uint8)
    kw = dict(scale=(1, 1), ratio=(1, 1), flip=False, mean=(0,), std=(1 / 255,), fill=0)
    out = TrainTransform(20, randaugment=(1, 10), ops=("translate_x",), **kw)(x, _gen())
    filled_cols = (out[:, 0] == 0).all(dim=1).sum(dim=1)  # 45% of 20 columns come from outside
    assert filled_cols.tolist() == [9] * 4
    rot = TrainTransform(20, randaugment=(1, 10), ops=("rotate",), **kw)(x, _gen())
    assert bool((rot[:, 0, 0, 0] == 0).all()) and bool((rot[:, 0, 10, 10] == 200).all())
    gray = TrainTransform(20, randaugment=(1, 10), ops=("rotate",), scale=(1, 1), ratio=(1, 1))(x, _gen())
    assert bool((gray[:, 0, 0, 0].abs() < 1e-6).all())  # default fill normalises to 0


def test_pixel_shift_moves_whole_pixels_and_fills_the_uncovered_band():
    x = _batch(b=64, c=1, h=10, w=12)
    tf = TrainTransform((10, 12), scale=(1, 1), ratio=(1.2, 1.2), flip=False, mean=(0.0,), std=(1 / 255,),
                        translate=3, fill=-7.0)
    out = tf(x, _gen(3))
    shifts = set()
    for img, src in zip(out[:, 0], x[:, 0].float()):
        match = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)
                 if torch.allclose(img, _shifted(src, dy, dx, -7.0), atol=1e-3)]
        assert len(match) == 1  # exactly one whole-pixel shift reproduces the sample: no resampling blur
        shifts.add(match[0])
    assert len(shifts) > 25  # 64 draws over 49 shifts: ~36 distinct expected
    with pytest.raises(ValueError, match="translate"):
        TrainTransform(10, translate=10)


def _shifted(src, dy, dx, fill):
    """src moved so that out[i, j] = src[i + dy, j + dx], fill where that falls outside."""
    h, w = src.shape
    out = torch.full_like(src, fill)
    out[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)] = src[max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)]
    return out


def test_random_erasing_boxes_of_noise():
    x = torch.zeros(32, 1, 16, 16, dtype=torch.uint8)
    out = TrainTransform(16, scale=(1, 1), ratio=(1, 1), flip=False, random_erasing=1.0)(x, _gen())
    erased = (out != -1.0).flatten(1).float().mean(1)
    assert bool(((erased > 0.01) & (erased < 0.45)).all())
    none = TrainTransform(16, scale=(1, 1), ratio=(1, 1), flip=False, random_erasing=0.0)(x, _gen())
    assert bool((none == -1.0).all())


def test_mixup_cutmix_targets_sum_to_one_and_match_the_mix():
    x = torch.randn(8, 1, 10, 10)
    y = torch.arange(8)
    plain_x, plain_t = Mixup(label_smoothing=0.1, num_classes=10)(x, y, _gen())
    assert plain_x is x and torch.allclose(plain_t.sum(1), torch.ones(8))
    assert plain_t[0, 0].item() == pytest.approx(0.91) and plain_t[0, 1].item() == pytest.approx(0.01)

    mx, mt = Mixup(mixup_alpha=0.8, num_classes=10)(x, y, _gen(2))
    lam = mt[0, 0].item()
    assert torch.allclose(mt.sum(1), torch.ones(8)) and mt[0, 7].item() == pytest.approx(1 - lam)
    torch.testing.assert_close(mx, lam * x + (1 - lam) * x.flip(0))

    cx, ct = Mixup(cutmix_alpha=1.0, label_smoothing=0.1, num_classes=10)(x, y, _gen(3))
    from_partner = (cx != x).flatten(1).float().mean(1)
    assert torch.allclose(ct.sum(1), torch.ones(8))
    lam_c = (ct[0, 0].item() - 0.01) / 0.9  # undo smoothing: lam * 1 + (1 - lam) * 0
    assert from_partner[0].item() == pytest.approx(1 - lam_c, abs=1e-6)
    assert bool(((cx == x) | (cx == x.flip(0))).all())


def test_eval_image_any_mode_to_model_input():
    rgba = Image.new("RGBA", (30, 20), (0, 0, 0, 0))
    out = EvalTransform(16, in_chans=3).image(rgba)
    assert out.shape == (3, 16, 16) and torch.allclose(out, torch.ones_like(out))  # white after compositing
    gray = Image.new("L", (16, 16), 51)
    m, s = NORMALIZE["imagenet"]
    out3 = EvalTransform(16, m, s, in_chans=3).image(gray)
    torch.testing.assert_close(out3[2], torch.full((16, 16), (0.2 - 0.406) / 0.225))
    i16 = Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16))
    torch.testing.assert_close(EvalTransform((8, 8), in_chans=1).image(i16), torch.ones(1, 8, 8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batch_gives_the_cpu_result():
    x = _batch(b=16, c=3, h=20, w=20)
    continuous = ("rotate", "shear_x", "translate_y", "brightness", "contrast", "color", "sharpness")  # no rounding
    tf = TrainTransform(16, randaugment=(2, 9), random_erasing=0.5, ops=continuous)
    cpu = tf(x, _gen(7))
    gpu = tf(x.cuda(), _gen(7))  # parameters come from the CPU generator either way
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=2e-3, rtol=0)
