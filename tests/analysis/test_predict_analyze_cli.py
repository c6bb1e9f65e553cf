"""`vitlab predict` and `vitlab analyze` end to end on tiny saved models."""
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

import vitlab
from vitlab.cli import main
from vitlab.data import EvalTransform

NAMES = ("cat", "dog", "eel")


def _save(path, **kw):
    cfg = dict(img_size=(12, 20), patch_size=4, num_classes=3, embed_dim=32, depth=2, num_heads=2, mlp_dim=64,
               class_names=NAMES, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    model = vitlab.VisionTransformer(vitlab.ViTConfig(**{**cfg, **kw})).eval()
    torch.nn.init.normal_(model.head.weight, std=2.0)  # a zero head would predict uniform probabilities
    model.save_pretrained(str(path))
    return model


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    good = tmp_path / "good.png"
    Image.fromarray(rng.integers(0, 256, (37, 23, 3), dtype=np.uint8)).save(good)
    grey = tmp_path / "grey.jpg"
    Image.fromarray(rng.integers(0, 256, (15, 40), dtype=np.uint8), "L").save(grey)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(good.read_bytes()[:60])  # a truncated PNG
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    return good, grey, corrupt, text, tmp_path / "missing.png"


def test_predict_reports_bad_files_and_classifies_the_rest(tmp_path, images, capsys):
    model = _save(tmp_path / "run" / "model")  # a training-run directory: RUN/model/
    good, grey, corrupt, text, missing = images
    out = tmp_path / "att" / "map.png"
    args = ["predict", str(tmp_path / "run"), str(good), str(corrupt), str(missing), str(grey), str(text),
            "--topk", "2", "--attention", str(out), "--device", "cpu"]
    assert main(args) == 1  # some images failed
    stdout, stderr = capsys.readouterr()
    for bad, why in ((corrupt, "corrupt or truncated"), (missing, "not found"), (text, "not a recognised image")):
        assert re.search(rf"{re.escape(str(bad))}: error: .*{why}", stderr)
    # the good images, each classified with the checkpoint's own preprocessing (resize, channels, mean/std)
    for path in (good, grey):
        x = EvalTransform.for_model(model.cfg).image(Image.open(path))
        with torch.no_grad():
            p = model(x[None]).softmax(-1)[0]
        top = p.topk(2)
        block = stdout.split(str(path) + "\n")[1].splitlines()[:2]
        assert [ln.split() for ln in block] == [[f"{q:.4f}", NAMES[i]] for q, i in zip(top.values, top.indices)]
    pngs = sorted(p.name for p in out.parent.iterdir())
    assert pngs == ["map_00_good.png", "map_02_grey.png"]  # one per readable image, position among found files + stem
    assert all((out.parent / n).stat().st_size > 1000 for n in pngs)


def test_predict_single_image_writes_exactly_the_named_png(tmp_path, images):
    _save(tmp_path / "ck")
    out = tmp_path / "one.png"
    assert main(["predict", str(tmp_path / "ck"), str(images[0]), "--attention", str(out)]) == 0
    assert out.is_file() and out.stat().st_size > 1000
    assert main(["predict", str(tmp_path / "ck"), str(images[0]), "--topk", "0"]) == 2


def _npz(path, n=10, size=(10, 14), chans=1):
    rng = np.random.default_rng(1)
    np.savez(path, x_test=rng.integers(0, 256, (n, chans, *size), dtype=np.uint8), y_test=np.arange(n) % 3)
    return path


@pytest.mark.parametrize("classifier,pos_embed,hybrid", [("token", "learn", False), ("gap", "none", False),
                                                          ("token", "learn2d", True)])
def test_analyze_end_to_end(tmp_path, classifier, pos_embed, hybrid):
    # the hybrid: a ResNet stem (stride 4) then 1 x 1 "patches", so the same 3 x 5 token grid
    kw = dict(img_size=(12, 20), patch_size=4) if not hybrid else dict(img_size=(12, 20), patch_size=1,
                                                                         backbone_layers=(), backbone_width=0.5)
    _save(tmp_path / "ck", classifier=classifier, pos_embed=pos_embed, **kw)
    data = _npz(tmp_path / "d.npz")  # grey 10 x 14 images for an RGB 12 x 20 model: resized and converted
    out = tmp_path / "out"
    assert main(["analyze", str(tmp_path / "ck"), "--data", str(data), "--out", str(out), "--num-images", "7",
                 "--num-rollout", "3", "--batch-size", "4"]) == 0
    index = (out / "index.md").read_text()
    expected = ["attention_distance", "rollout"] + (["pos_embed_similarity"] if pos_embed != "none" else [])
    expected += [] if hybrid else ["filters"]
    for stem in expected:
        assert (out / f"{stem}.png").stat().st_size > 1000 and f"({stem}.png)" in index and f"({stem}.json)" in index
    dist = json.loads((out / "attention_distance.json").read_text())
    assert dist["num_images"] == 7 and np.array(dist["distance"]).shape == (2, 2)
    assert dist["pixels_per_token"] == [4.0, 4.0]
    roll = json.loads((out / "rollout.json").read_text())
    assert np.array(roll["maps"]).shape == (3, 3, 5) and len(roll["titles"]) == 3
    if hybrid:
        assert not (out / "filters.png").exists() and "pixel patch embedding" in index
    else:
        assert np.array(json.loads((out / "filters.json").read_text())["components"]).shape == (28, 3, 4, 4)
    if pos_embed == "none":
        assert not (out / "pos_embed_similarity.png").exists() and "no position embeddings" in index
        assert "no class token" in index
    else:
        sim = json.loads((out / "pos_embed_similarity.json").read_text())
        assert np.array(sim["similarity"]).shape == (3, 5, 3, 5)


def test_analyze_rejects_bad_data(tmp_path, capsys):
    _save(tmp_path / "ck")
    assert main(["analyze", str(tmp_path / "ck"), "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "nope" in capsys.readouterr().err
