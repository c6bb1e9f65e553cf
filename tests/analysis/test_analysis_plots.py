"""Every figure is written as a real, non-empty PNG, for colour and grey inputs and non-square grids."""
import numpy as np
import pytest
from PIL import Image

from vitlab.analysis import plot_attention_distance, plot_filters, plot_position_similarity, plot_rollout
from vitlab.analysis.plots import upsample_map

rng = np.random.default_rng(0)


def _png_ok(path) -> tuple[int, int]:
    assert path.is_file() and path.stat().st_size > 1000
    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG"
        arr = np.asarray(im.convert("L"))
    assert arr.std() > 1  # something was drawn, not a blank canvas
    return im.size


@pytest.mark.parametrize("chans", [1, 3])
def test_filters_grid(tmp_path, chans):
    _png_ok(plot_filters(rng.normal(size=(10, chans, 4, 4)), tmp_path / "sub" / "f.png", np.full(10, 0.05)))


def test_position_similarity_grid_is_laid_out_like_the_patch_grid(tmp_path):
    wide = _png_ok(plot_position_similarity(rng.uniform(-1, 1, size=(2, 6, 2, 6)), tmp_path / "wide.png"))
    tall = _png_ok(plot_position_similarity(rng.uniform(-1, 1, size=(6, 2, 6, 2)), tmp_path / "tall.png"))
    assert wide[0] > wide[1] and tall[1] > tall[0]


def test_attention_distance_scatter(tmp_path):
    _png_ok(plot_attention_distance(rng.uniform(0, 30, size=(4, 3)), tmp_path / "d.png", (32, 48)))


def test_rollout_overlays_for_images_of_any_size_and_mode(tmp_path):
    imgs = [rng.integers(0, 256, (30, 50, 3), dtype=np.uint8), rng.integers(0, 256, (28, 28, 1), dtype=np.uint8),
            rng.integers(0, 256, (17, 9), dtype=np.uint8)]
    masks = rng.uniform(size=(3, 2, 3))
    _png_ok(plot_rollout(imgs, masks, tmp_path / "r.png", titles=["a", "b", "c"]))
    _png_ok(plot_rollout(imgs[:1], masks[:1], tmp_path / "one.png"))
    with pytest.raises(ValueError, match="rollout maps"):
        plot_rollout(imgs, masks[:2], tmp_path / "bad.png")


def test_upsampled_map_keeps_where_the_mass_is():
    m = np.zeros((2, 3))
    m[1, 2] = 1.0
    up = upsample_map(m, (20, 30))
    assert up.shape == (20, 30) and np.unravel_index(up.argmax(), up.shape)[0] >= 10 and up[:10, :15].max() == 0
