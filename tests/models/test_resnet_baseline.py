"""The BiT ResNet baseline classifier: registry, API, save/load, and a few real training steps."""
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vitlab import create_model, from_pretrained
from vitlab.models import ResNet, ResNetConfig

FASHION = Path("/usr/share/datasets/fashion-mnist")


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def test_resnet_sizes_and_api():
    with torch.device("meta"):
        r50 = create_model("resnet50")
    assert sum(p.numel() for p in r50.parameters()) == 25_557_032  # GN affine = BN affine: torchvision's count
    model = create_model("resnet50", layers=(1, 1, 1, 1), num_classes=10, in_chans=1, width=0.5).eval()
    assert isinstance(model, ResNet) and model.stem.conv.weight.shape == (32, 1, 7, 7)
    x = torch.randn(2, 1, 28, 28)
    feats = model.forward_features(x)
    assert feats.shape == (2, 1024, 1, 1)  # 28 -> 14 -> 7 -> 7 -> 4 -> 2 -> 1 with SAME padding
    assert model.forward_head(feats, pre_logits=True).shape == (2, 1024) and model.num_features == 1024
    assert torch.all(model(x) == 0)  # zero-initialised head
    model.reset_classifier(3)
    assert model(x).shape == (2, 3) and model.cfg.num_classes == 3
    with pytest.raises(ValueError, match="channels"):
        model(torch.randn(2, 3, 28, 28))
    with pytest.raises(ValueError, match="width"):
        create_model("resnet26", width=0.25)
    with pytest.raises(TypeError, match="unknown model option"):
        create_model("resnet26", embed_dim=64)


def test_resnet_save_pretrained_round_trip_and_head_swap(tmp_path):
    small = dict(layers=(1, 1), in_chans=1, width=0.5)
    model = create_model("resnet26", num_classes=4, class_names=list("abcd"), **small).eval()
    with torch.no_grad():
        model.head.weight.normal_()
    model.save_pretrained(tmp_path / "r26")
    loaded = from_pretrained(tmp_path / "r26").eval()
    assert isinstance(loaded.cfg, ResNetConfig) and loaded.cfg == model.cfg
    x = torch.randn(2, 1, 32, 32)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    finetune = create_model("resnet26", num_classes=7, weights=str(tmp_path / "r26"), **small).eval()
    torch.testing.assert_close(finetune.forward_features(x), model.forward_features(x), rtol=0, atol=0)
    assert torch.all(finetune(x) == 0)  # the 4-class head was replaced by a zero-initialised 7-class one


@pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").is_file(),
                    reason=f"Fashion-MNIST not installed at {FASHION} (Debian package dataset-fashion-mnist)")
def test_resnet26_trains_on_fashion_mnist():
    images = read_idx(FASHION / "train-images-idx3-ubyte.gz")[:96]
    labels = read_idx(FASHION / "train-labels-idx1-ubyte.gz")[:96]
    x = (torch.from_numpy(images.copy()).float()[:, None] / 255 - 0.5) / 0.5
    y = torch.from_numpy(labels.astype(np.int64))
    model = create_model("resnet26", num_classes=10, in_chans=1, width=0.5, img_size=28)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for epoch in range(2):
        for i in range(0, 96, 32):
            loss = F.cross_entropy(model(x[i:i + 32]), y[i:i + 32])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert losses[0] == pytest.approx(np.log(10), abs=1e-4)  # zero-initialised head: uniform predictions
    assert np.isfinite(losses).all() and np.mean(losses[-3:]) < 0.8 * losses[0], losses
