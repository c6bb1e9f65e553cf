"""The CLI by name: `vitlab pretrained`, `vitlab download`, and a pretrained NAME where a checkpoint path goes
(predict printing ImageNet class names, info, convert), against the local weights server."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

import vitlab
from vitlab.cli import main
from vitlab.weights.catalog import get_pretrained
from vitlab.weights.official import vitlab_to_official

NAME = "vit_ti16.augreg_in21k_ft_in1k_224"


@pytest.fixture
def served(weights_server):
    """A tiny ViT at NAME's path whose head always answers class 281."""
    model = vitlab.create_model("vit_ti16", embed_dim=16, depth=1, num_heads=2, mlp_dim=32, num_classes=1000)
    with torch.no_grad():
        model.head.bias[281] = 100.0
    buf = io.BytesIO()
    np.savez(buf, **vitlab_to_official(model.state_dict(), 2, "linen"))
    path = "/vit_models/" + get_pretrained(NAME).file
    weights_server.files[path] = buf.getvalue()
    return weights_server, path


def test_pretrained_lists_the_catalog(capsys):
    assert main(["pretrained", "vit_s16.*"]) == 0
    out = capsys.readouterr().out
    assert "vit_s16.augreg_in21k_ft_in1k" in out and "83.73% (README)" in out and "Apache-2.0" in out
    assert "also: vit_small_patch16_384.augreg_in21k_ft_in1k" in out and "vit_b16" not in out
    assert main(["pretrained", "nothing*"]) == 2
    assert "no pretrained weights match" in capsys.readouterr().err


def test_download_then_commands_by_name_make_no_request(served, tmp_path, capsys):
    server, path = served
    assert main(["download", NAME]) == 0
    assert str(get_pretrained(NAME).file) in capsys.readouterr().out
    assert len(server.log) == 1
    img = tmp_path / "cat.png"
    Image.fromarray(np.full((50, 70, 3), 128, np.uint8)).save(img)
    assert main(["predict", NAME, str(img), "--topk", "1", "--device", "cpu"]) == 0
    assert "tabby, tabby cat" in capsys.readouterr().out
    assert main(["info", NAME]) == 0
    assert "tench, Tinca tinca" in capsys.readouterr().out
    assert main(["convert", NAME, str(tmp_path / "out"), "--to", "vitlab"]) == 0
    assert vitlab.from_pretrained(tmp_path / "out").cfg.class_names[281] == "tabby, tabby cat"
    assert len(server.log) == 1


def test_unknown_name_is_a_one_line_error(weights_server, capsys):
    assert main(["download", "vit_b16.augreg_in21"]) == 2
    err = capsys.readouterr().err
    assert "no pretrained weights named 'vit_b16.augreg_in21'" in err and "did you mean" in err
    assert main(["info", "vit_b16.augreg_in21k_ft_in1"]) == 2
    assert "neither a file or directory nor a pretrained name; did you mean" in capsys.readouterr().err
