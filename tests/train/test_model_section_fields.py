"""The model section takes ViT and BiT ResNet fields; the named model's config decides which are valid."""
from __future__ import annotations

import pytest

from vitlab.train import load_config

from .conftest import ROOT


def test_resnet_fields_set_a_bit_resnet():
    cfg = load_config(None, ["model.name=resnet26", "model.layers=[1,1]", "model.width=0.5", "model.in_chans=1"])
    assert cfg.model.options == {"layers": [1, 1], "width": 0.5, "in_chans": 1}


def test_fields_the_named_model_lacks_are_refused_before_training():
    with pytest.raises(KeyError, match=r"model.patch_size.*not a field of resnet26's config") as e:
        load_config(ROOT / "configs" / "fmnist.yaml", ["model.name=resnet26"])
    assert "model.layers" in str(e.value)  # the valid keys are listed
    with pytest.raises(KeyError, match="model.width: not a field of vit_mnist"):
        load_config(None, ["model.width=3"])
    with pytest.raises(ValueError, match="model.layers"):
        load_config(None, ["model.name=resnet26", "model.layers=3"])
