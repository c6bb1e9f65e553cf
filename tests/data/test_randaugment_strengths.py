"""RandAugment strengths at magnitude 10 against PIL or the geometry itself: brightness blends with black
(factor 1 +- 0.9), rotate turns by 30 degrees, shear moves x by 0.3 y (timm's "increasing" scale).
A bright blob off the centre shows where the map sends it, whatever the sign drawn."""
import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance

from vitlab.data import TrainTransform

RAW = dict(scale=(1, 1), ratio=(1, 1), flip=False, mean=(0,), std=(1 / 255,), fill=0)  # output in 0..255


@pytest.mark.parametrize("magnitude", [10, 5])
def test_brightness_blends_with_black_like_pil(magnitude):
    x = torch.randint(20, 140, (12, 3, 10, 10), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    tf = TrainTransform(10, randaugment=(1, magnitude), ops=("brightness",), **RAW)
    out = tf(x, torch.Generator().manual_seed(1))
    used = set()
    for i in range(len(x)):
        img = Image.fromarray(x[i].permute(1, 2, 0).numpy())
        errs = {}
        for f in (1 - 0.09 * magnitude, 1 + 0.09 * magnitude):
            ref = np.asarray(ImageEnhance.Brightness(img).enhance(f), dtype=np.float32)
            errs[f] = np.abs(out[i].permute(1, 2, 0).numpy() - ref).max()
        best = min(errs, key=errs.get)
        assert errs[best] <= 1.0, (i, errs)  # PIL rounds to uint8
        used.add(best)
    assert len(used) == 2  # both signs were drawn and checked


def blob_image(h: int, w: int, dy: float, dx: float) -> torch.Tensor:
    """A 2x2 white square whose centre is (dy, dx) pixels from the image centre, on black."""
    x = torch.zeros(1, 1, h, w, dtype=torch.uint8)
    cy, cx = (h - 1) / 2 + dy, (w - 1) / 2 + dx
    x[0, 0, int(cy - 0.5) : int(cy - 0.5) + 2, int(cx - 0.5) : int(cx - 0.5) + 2] = 255
    return x.expand(16, -1, -1, -1).contiguous()


def centroids(out: torch.Tensor) -> np.ndarray:
    """(B, 2) intensity centroids (dy, dx) relative to the image centre."""
    b, _, h, w = out.shape
    m = out[:, 0].double().clamp_min(0)
    ys = torch.arange(h, dtype=torch.float64).view(1, h, 1) - (h - 1) / 2
    xs = torch.arange(w, dtype=torch.float64).view(1, 1, w) - (w - 1) / 2
    tot = m.sum((1, 2))
    return torch.stack([(m * ys).sum((1, 2)) / tot, (m * xs).sum((1, 2)) / tot], 1).numpy()


@pytest.mark.parametrize("h, w", [(32, 32), (32, 40)])
def test_rotate_at_magnitude_10_turns_by_30_degrees(h, w):
    x = blob_image(h, w, 0.0, 10.0)
    kw = {**RAW, "ratio": (w / h, w / h)}  # the crop is the whole image, not a stretched square
    out = TrainTransform((h, w), randaugment=(1, 10), ops=("rotate",), **kw)(x, torch.Generator().manual_seed(2))
    c = centroids(out)
    angles = np.degrees(np.arctan2(c[:, 0], c[:, 1]))
    np.testing.assert_allclose(np.abs(angles), 30.0, atol=1.5)
    np.testing.assert_allclose(np.hypot(c[:, 0], c[:, 1]), 10.0, atol=0.5)  # a rotation, also on a non-square image
    assert (angles > 0).any() and (angles < 0).any()


@pytest.mark.parametrize("op, dy, dx", [("shear_x", 10.0, 0.0), ("shear_y", 0.0, 10.0)])
def test_shear_at_magnitude_10_moves_by_0_3_of_the_other_coordinate(op, dy, dx):
    x = blob_image(32, 32, dy, dx)
    out = TrainTransform(32, randaugment=(1, 10), ops=(op,), **RAW)(x, torch.Generator().manual_seed(3))
    c = centroids(out)
    along, across = (c[:, 1], c[:, 0]) if op == "shear_x" else (c[:, 0], c[:, 1])
    np.testing.assert_allclose(np.abs(along), 3.0, atol=0.3)  # 0.3 x 10 pixels
    np.testing.assert_allclose(across, 10.0, atol=0.3)  # the other coordinate stays
    assert (along > 0).any() and (along < 0).any()
