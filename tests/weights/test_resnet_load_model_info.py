"""vitlab.load_model and `vitlab info` on save_pretrained directories of the ResNet baseline."""
import pytest
import torch

import vitlab
from vitlab import cli
from vitlab.models import ResNet, ResNetConfig


def _resnet(path):
    torch.manual_seed(0)
    m = vitlab.create_model("resnet26", layers=(1, 1), in_chans=1, width=0.5, num_classes=3, class_names=["a", "b", "c"])
    with torch.no_grad():
        m.head.weight.normal_()
    m.save_pretrained(path / "run" / "model")  # a training-run directory layout
    return m.eval()


def test_load_model_rebuilds_resnet_and_swaps_head(tmp_path):
    ref = _resnet(tmp_path)
    x = torch.randn(2, 1, 32, 32)
    for p in (tmp_path / "run", tmp_path / "run" / "model"):
        m = vitlab.load_model(p)
        assert isinstance(m, ResNet) and isinstance(m.cfg, ResNetConfig) and m.cfg == ref.cfg and not m.training
        torch.testing.assert_close(m(x), ref(x), rtol=0, atol=0)
    new = vitlab.load_model(tmp_path / "run", num_classes=5)
    assert new(x).shape == (2, 5) and torch.all(new(x) == 0)  # the 3-class head replaced by a zero one
    torch.testing.assert_close(new.forward_features(x), ref.forward_features(x), rtol=0, atol=0)
    with pytest.raises(TypeError, match="unknown ResNet option.*embed_dim"):
        vitlab.load_model(tmp_path / "run", embed_dim=64)


def test_info_describes_resnet(tmp_path, capsys):
    ref = _resnet(tmp_path)
    assert cli.main(["info", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    n = sum(p.numel() for p in ref.parameters())
    assert "BiT ResNet classifier, stages [1, 1], width x0.5" in out and f"parameters:    {n:,}" in out
    assert "classes:       3 (a, b, c)" in out


def test_new_class_count_drops_the_checkpoints_class_names(tmp_path):
    vit = vitlab.create_model("vit_mnist", img_size=8, patch_size=2, in_chans=1, embed_dim=32, depth=1, num_heads=2,
                              mlp_dim=64, num_classes=3, class_names=["a", "b", "c"])
    vit.save_pretrained(tmp_path / "vit")
    assert vitlab.load_model(tmp_path / "vit").cfg.class_names == ("a", "b", "c")
    new = vitlab.load_model(tmp_path / "vit", num_classes=5)  # the names belonged to the replaced 3-class head
    assert new.cfg.num_classes == 5 and new.cfg.class_names is None
