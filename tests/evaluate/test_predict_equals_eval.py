"""`vitlab predict` (and serve) give the probabilities `vitlab eval` scored: one preprocessing definition,
taken from the model's metadata (here a centre crop with bicubic resizing, not the default)."""
import base64
import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

import vitlab
from vitlab.analysis import predict_files
from vitlab.evaluate.metrics import evaluate_checkpoint

NAMES = ("cat", "dog", "eel")
CROP = dict(eval_resize="shorter", eval_crop_pct=0.8, eval_interpolation="bicubic")


def _model(**kw) -> vitlab.VisionTransformer:
    torch.manual_seed(0)
    cfg = dict(img_size=(12, 20), patch_size=4, num_classes=3, embed_dim=32, depth=2, num_heads=2, mlp_dim=64,
               class_names=NAMES, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    model = vitlab.VisionTransformer(vitlab.ViTConfig(**{**cfg, **kw})).eval()
    torch.nn.init.normal_(model.head.weight, std=0.5)  # a zero head would predict uniform probabilities
    return model


def _folder(root, size):
    """Class folders of non-square PNG and JPEG images (smooth, so the crop matters), labels by folder."""
    rng = np.random.default_rng(0)
    files, labels = [], []
    for label, name in enumerate(NAMES):
        (root / name).mkdir(parents=True)
        for k, ext in enumerate((".png", ".jpg", ".png")):
            small = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
            img = Image.fromarray(small).resize(size[::-1], Image.Resampling.BICUBIC)
            path = root / name / f"{k}{ext}"
            img.save(path)
            files.append(path)
            labels.append(label)
    return files, labels


def _predicted_loss(model, files, labels) -> float:
    preds = predict_files(model, files, topk=len(NAMES))
    probs = [dict(p.top)[NAMES[y]] for p, y in zip(preds, labels)]
    return -sum(math.log(q) for q in probs) / len(probs)


def test_predict_gives_the_probabilities_eval_scored(tmp_path):
    model = _model(**CROP)
    model.save_pretrained(str(tmp_path / "m"))
    # Images at 15 x 25, the model's 12 x 20 / crop_pct: both crop the centre without resampling.
    files, labels = _folder(tmp_path / "data", size=(15, 25))
    scored = evaluate_checkpoint(str(tmp_path / "m"), str(tmp_path / "data"), split="train")
    assert scored["n"] == len(files)
    assert _predicted_loss(vitlab.load_model(tmp_path / "m"), files, labels) == pytest.approx(scored["loss"], abs=1e-6)
    # and the definition matters: the same weights with the default preprocessing (the whole image
    # resized) give other probabilities
    plain = _model()
    plain.load_state_dict(model.state_dict())
    assert abs(_predicted_loss(plain, files, labels) - scored["loss"]) > 1e-2


@pytest.mark.parametrize("workers", [0, 2])
def test_eval_reads_each_file_of_a_folder_as_predict_does(tmp_path, workers):
    """Images of a size that needs resampling (31 x 47 -> crop of 12 x 20): eval streams the folder's files
    through the same Preprocess.resize_pil per image (in DataLoader workers), so the probabilities match to
    float precision, not just to a resize's rounding."""
    model = _model(**CROP)
    model.save_pretrained(str(tmp_path / "m"))
    files, labels = _folder(tmp_path / "data", size=(31, 47))
    scored = evaluate_checkpoint(str(tmp_path / "m"), str(tmp_path / "data"), split="train", workers=workers)
    assert scored["n"] == len(files)
    assert _predicted_loss(vitlab.load_model(tmp_path / "m"), files, labels) == pytest.approx(scored["loss"], abs=1e-6)


def test_predict_and_serve_preprocess_any_image_as_the_metadata_says(tmp_path):
    model = _model(**CROP)
    path = tmp_path / "wide.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (37, 90, 3), dtype=np.uint8)).save(path)
    img = Image.open(path).convert("RGB")
    # by hand: shorter side 37 -> 15 (12 / 0.8), the other side int(90 * 15 / 37) = 36, centre crop 12 x 20
    by_hand = img.resize((36, 15), Image.Resampling.BICUBIC).crop((8, 2, 28, 14))
    x = (np.asarray(by_hand, np.float32) / 255 - np.array(model.cfg.mean, np.float32)) / np.array(model.cfg.std, np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x).permute(2, 0, 1)[None]).softmax(-1)[0]
    top = dict(predict_files(model, [path], topk=3)[0].top)
    assert [top[n] for n in NAMES] == pytest.approx(expected.tolist(), abs=1e-6)

    pytest.importorskip("starlette", reason="the 'serve' extra is not installed (pip install 'vitlab[serve]')")
    from vitlab.serve.app import Explorer

    served = Explorer(model, card={}).predict(Image.open(path), topk=3)
    assert {t["label"]: t["probability"] for t in served["top"]} == pytest.approx(top, abs=1e-6)
    view = np.asarray(Image.open(io.BytesIO(base64.b64decode(served["image"].split(",")[1]))))
    assert view.shape[:2] == (154, 256)  # the crop as the model sees it (12 x 20), at display size


def test_attention_overlay_is_drawn_over_the_part_the_model_sees(tmp_path):
    from vitlab.analysis.predict import _seen
    from vitlab.data import EvalTransform

    img = Image.fromarray(np.zeros((40, 80, 3), np.uint8))
    # resized to 15 x 30, cropped at (2, 5) to 12 x 20: in the original's pixels rows 5..37, columns 13..67
    assert _seen(img, EvalTransform.for_model(_model(**CROP).cfg)).shape == (32, 54, 3)
    assert _seen(img, EvalTransform.for_model(_model().cfg)).shape == (40, 80, 3)  # whole: the whole image
