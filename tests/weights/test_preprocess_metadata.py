"""The test-time preprocessing (eval_resize, eval_crop_pct, eval_interpolation) travels with the weights:
save_pretrained / from_pretrained for ViTs and ResNets, the vitlab state dict, and Hugging Face directories,
whose image processor transformers itself reads back into the same pixels."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import vitlab
from vitlab.data import EvalTransform, Preprocess
from vitlab.models import ResNet, ResNetConfig
from vitlab.weights import describe_checkpoint, load_model, save_hf
from vitlab.weights.export import save_state_dict

FIELDS = dict(eval_resize="shorter", eval_crop_pct=0.875, eval_interpolation="bicubic")
TINY = dict(img_size=32, patch_size=8, embed_dim=48, depth=1, num_heads=4, mlp_dim=96, num_classes=5)


def _fields(cfg) -> tuple:
    return cfg.eval_resize, cfg.eval_crop_pct, cfg.eval_interpolation


def test_save_pretrained_round_trip_for_vit_and_resnet(tmp_path):
    vit = vitlab.VisionTransformer(vitlab.ViTConfig(**TINY, **FIELDS))
    vit.save_pretrained(str(tmp_path / "vit"))
    raw = json.loads((tmp_path / "vit" / "config.json").read_text())
    assert (raw["eval_resize"], raw["eval_crop_pct"], raw["eval_interpolation"]) == tuple(FIELDS.values())
    for back in (vitlab.from_pretrained(tmp_path / "vit"), load_model(tmp_path / "vit")):
        assert _fields(back.cfg) == tuple(FIELDS.values())
    assert "test images: resize shorter, crop_pct 0.875, bicubic" in describe_checkpoint(tmp_path / "vit")  # vitlab info
    resnet = ResNet(ResNetConfig(layers=(1,), width=0.5, num_classes=3, img_size=24, **FIELDS))
    resnet.save_pretrained(str(tmp_path / "resnet"))
    assert _fields(load_model(tmp_path / "resnet").cfg) == tuple(FIELDS.values())
    save_state_dict(vit, tmp_path / "sd.safetensors")
    assert _fields(load_model(tmp_path / "sd.safetensors").cfg) == tuple(FIELDS.values())


def test_a_config_json_from_before_the_fields_means_todays_default(tmp_path):
    vitlab.VisionTransformer(vitlab.ViTConfig(**TINY)).save_pretrained(str(tmp_path / "old"))
    path = tmp_path / "old" / "config.json"
    raw = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in raw.items() if not k.startswith("eval_")}))
    assert Preprocess.from_config(load_model(tmp_path / "old").cfg) == Preprocess(32, "whole", 1.0, "bilinear")


@pytest.mark.parametrize("fields, processor", [
    ({}, "ViTImageProcessor"),
    (dict(eval_crop_pct=0.875, eval_interpolation="bicubic"), "DeiTImageProcessor"),
    (FIELDS, "BitImageProcessor"),
])
def test_hf_image_processor_reproduces_the_preprocessing_and_reads_back(tmp_path, fields, processor):
    transformers = pytest.importorskip("transformers")
    transformers.utils.logging.set_verbosity_error()
    model = vitlab.VisionTransformer(vitlab.ViTConfig(**TINY, mean=(0.2, 0.45, 0.7), std=(0.3, 0.2, 0.1), **fields))
    save_hf(model, tmp_path / "hf")
    proc = transformers.AutoImageProcessor.from_pretrained(tmp_path / "hf")
    assert type(proc).__name__.startswith(processor)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (45, 61, 3), dtype=np.uint8))
    theirs = proc(img, return_tensors="pt")["pixel_values"][0]
    torch.testing.assert_close(theirs, EvalTransform.for_model(model.cfg).image(img), atol=1e-5, rtol=0)
    back = Preprocess.from_config(load_model(tmp_path / "hf").cfg)
    assert back.resize_pil(img).tobytes() == Preprocess.from_config(model.cfg).resize_pil(img).tobytes()
    assert (back.resize, back.interpolation) == (model.cfg.eval_resize, model.cfg.eval_interpolation)


def test_a_deit_style_hf_processor_is_read_as_whole_image_squash_and_crop(tmp_path):
    save_hf(vitlab.VisionTransformer(vitlab.ViTConfig(**TINY)), tmp_path / "hf")
    # as facebook/deit-*-224 ship it: ints for both sizes, bicubic
    (tmp_path / "hf" / "preprocessor_config.json").write_text(json.dumps({
        "feature_extractor_type": "DeiTFeatureExtractor", "do_resize": True, "size": 256, "do_center_crop": True,
        "crop_size": 224, "resample": 3, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}))
    cfg = load_model(tmp_path / "hf").cfg
    assert _fields(cfg) == ("whole", 0.875, "bicubic")
