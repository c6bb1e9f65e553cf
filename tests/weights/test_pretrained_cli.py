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


def test_the_documented_transfer_commands_by_name(weights_server, tmp_path, make_folder, capsys):
    """docs/guides/pretrained.md: `vitlab train --config configs/finetune.yaml ... model.weights=NAME
    data.dataset=photos/` and `vitlab fewshot NAME --data photos/`, a few steps on tiny served weights."""
    name = "vit_s16.augreg_in21k"
    model = vitlab.create_model("vit_s16", embed_dim=16, depth=1, num_heads=2, mlp_dim=32, num_classes=21843,
                                img_size=32)
    buf = io.BytesIO()
    np.savez(buf, **vitlab_to_official(model.state_dict(), 2, "linen"))
    weights_server.files["/vit_models/" + get_pretrained(name).file] = buf.getvalue()
    photos = make_folder(tmp_path / "photos", classes=2, per_class=6)
    root = __import__("pathlib").Path(__file__).resolve().parents[2]
    assert main(["train", "--config", str(root / "configs" / "finetune.yaml"), "--out", str(tmp_path / "ft"),
                 f"model.weights={name}", f"data.dataset={photos}", "model.img_size=48", "data.batch_size=4",
                 "data.eval_batch_size=8", "data.dev_fraction=0", "schedule.steps=2", "schedule.warmup_steps=1",
                 "train.threads=1", "--no-progress"]) == 0
    cfg = vitlab.from_pretrained(tmp_path / "ft" / "model").cfg
    assert cfg.img_size == (48, 48) and cfg.num_classes == 2 and cfg.mean == (0.5, 0.5, 0.5)
    assert main(["fewshot", name, "--data", str(photos), "--shots", "1", "--seeds", "0", "--split-test", "train",
                 "--device", "cpu", "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert f"{name}: " in out and "16-d pre-logits" in out  # the tiny served width: its features were probed
    assert len(weights_server.log) == 1  # one download served both
