"""The table of published backbone weights (vitlab.weights.backbones): every entry is a registry name whose
config takes its preprocessing, and a timm file's overrides are only what its shapes cannot say."""
import pytest

from vitlab.models.registry import get_config
from vitlab.weights.backbones import BACKBONE_WEIGHTS


@pytest.mark.parametrize("name", sorted(BACKBONE_WEIGHTS))
def test_entry_is_a_registry_model_with_valid_preprocessing(name):
    w = BACKBONE_WEIGHTS[name]
    for source in ("timm", "hf"):
        cfg = get_config(w.model, **w.load_overrides(source))
        assert cfg.img_size == (w.img_size, w.img_size) and cfg.mean == w.mean
    registered = get_config(w.model)
    assert all(getattr(registered, k) == v for k, v in w.timm_overrides.items())  # the registry is the original
    assert w.timm.startswith("timm/") and (w.hf is None or "/" in w.hf)


def test_families_are_complete():
    assert sum(n.endswith("_dinov2") for n in BACKBONE_WEIGHTS) == 8
    assert sum("_siglip_" in n for n in BACKBONE_WEIGHTS) == 5 and sum(n.endswith("_clip") for n in BACKBONE_WEIGHTS) == 2
    with pytest.raises(ValueError, match="source"):
        BACKBONE_WEIGHTS["vit_b16_clip"].load_overrides("npz")
