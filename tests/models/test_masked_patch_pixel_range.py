"""Masked-patch colour targets under any normalisation: the same classes as on [-1, 1] images."""
import pytest
import torch

from vitlab.models.masked import mean_colour_targets, pixel_range


def test_targets_do_not_depend_on_the_normalisation():
    g = torch.Generator().manual_seed(0)
    raw = torch.randint(0, 256, (4, 3, 16, 16), generator=g).float() / 255  # [0, 1]
    ref = mean_colour_targets(raw * 2 - 1, 4)  # the official [-1, 1]
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # per-channel ranges differ
    normed = (raw - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.equal(mean_colour_targets(normed, 4, pixel_range(mean, std)), ref)
    assert not torch.equal(mean_colour_targets(normed, 4), ref)  # the [-1, 1] default would be wrong here
    lo, hi = pixel_range((0.5,), (0.5,))
    assert lo == (-1.0,) and hi == (1.0,)
    grey = torch.rand(2, 1, 8, 8, generator=g) * 2 - 1  # [-1, 1] given as 3 equal values fits a grey model
    assert torch.equal(mean_colour_targets(grey, 4, pixel_range((0.5,) * 3, (0.5,) * 3, channels=1)),
                       mean_colour_targets(grey, 4))
    with pytest.raises(ValueError, match="3 values but the model has 1 channel"):
        pixel_range(mean, std, channels=1)
