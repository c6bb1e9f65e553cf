"""The test-time preprocessing (eval_resize, eval_crop_pct, eval_interpolation) travels with the weights:
save_pretrained / from_pretrained for ViTs and ResNets, the vitlab state dict, and Hugging Face directories,
whose image processors transformers reads back: the slow (PIL) one into the same pixels, the fast (torchvision)
one, a user's default where torchvision is installed, within one grey level on photos; both crop a half-pixel
offset one pixel nearer the top left than vitlab (timm) does."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vitlab
from vitlab.data import EvalTransform, Preprocess
from vitlab.models import ResNet, ResNetConfig
from vitlab.weights import describe_checkpoint, load_model, save_hf
from vitlab.weights.export import save_state_dict

from ..conftest import _photo

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


PROCESSORS = {  # case: (eval_* fields, the HF processor class they export as)
    "vit": ({}, "ViTImageProcessor"),
    "deit": (dict(eval_crop_pct=0.875, eval_interpolation="bicubic"), "DeiTImageProcessor"),
    "bit": (FIELDS, "BitImageProcessor"),
}


def _model(fields: dict) -> vitlab.VisionTransformer:
    return vitlab.VisionTransformer(vitlab.ViTConfig(**TINY, mean=(0.2, 0.45, 0.7), std=(0.3, 0.2, 0.1), **fields))


def _noise(h: int, w: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _grey_levels(theirs, ours, cfg) -> np.ndarray:
    """|theirs - ours| of two normalised (C, H, W) arrays, in grey levels of 255 (normalisation undone)."""
    return np.abs(np.asarray(theirs) - np.asarray(ours)) * np.array(cfg.std)[:, None, None] * 255


@pytest.mark.parametrize("fields, processor", PROCESSORS.values(), ids=PROCESSORS)
def test_hf_image_processor_reproduces_the_preprocessing_and_reads_back(tmp_path, fields, processor):
    """transformers' slow (PIL) processor, the one AutoImageProcessor gives where torchvision is not installed:
    the same pixels as vitlab (Pillow's resize on both sides; float rounding only), wherever the centre crop's
    offset is whole or a half that rounds down (see the next test). The fast processor: the test after."""
    transformers = pytest.importorskip("transformers")
    transformers.utils.logging.set_verbosity_error()
    model = _model(fields)
    save_hf(model, tmp_path / "hf")
    proc = transformers.AutoImageProcessor.from_pretrained(tmp_path / "hf", use_fast=False)
    assert type(proc).__name__.startswith(processor)
    img = _noise(45, 61)
    theirs = proc(img, return_tensors="pt")["pixel_values"][0]
    torch.testing.assert_close(theirs, EvalTransform.for_model(model.cfg).image(img), atol=1e-5, rtol=0)
    back = Preprocess.from_config(load_model(tmp_path / "hf").cfg)
    assert back.resize_pil(img).tobytes() == Preprocess.from_config(model.cfg).resize_pil(img).tobytes()
    assert (back.resize, back.interpolation) == (model.cfg.eval_resize, model.cfg.eval_interpolation)


# The centre crop where its offset is a half: vitlab rounds it as timm (torchvision's CenterCrop) does, to even;
# both of transformers' processors floor it. With img_size 32: eval_resize=shorter scales a 48x90 (w x h) image
# to 36x67, offset (67 - 32) / 2 = 17.5 (vitlab 18, HF 17); eval_resize=whole at crop_pct 0.9 scales to 35x35,
# offset 1.5 on both axes (vitlab 2, HF 1).
HALF_OFFSETS = {  # case: (eval_* fields, the rows and columns HF's crop holds beyond vitlab's)
    "bit_half": (FIELDS, (slice(1, None), slice(None))),
    "deit_half": (dict(eval_crop_pct=0.9), (slice(1, None), slice(1, None))),
}


def _one_pixel_nearer_the_top_left(theirs, ours, rows_cols) -> tuple[np.ndarray, np.ndarray]:
    """theirs and ours cut to the part both crops hold: HF's crop sits one pixel above (and left of) vitlab's."""
    rows, cols = rows_cols
    back = tuple(slice(None, -1) if s.start else slice(None) for s in (rows, cols))
    return np.asarray(theirs)[:, rows, cols], np.asarray(ours)[:, back[0], back[1]]


@pytest.mark.parametrize("fields, rows_cols", HALF_OFFSETS.values(), ids=HALF_OFFSETS)
def test_hf_processors_crop_one_pixel_nearer_the_top_left_where_the_offset_is_a_half(tmp_path, fields, rows_cols):
    transformers = pytest.importorskip("transformers")
    transformers.utils.logging.set_verbosity_error()
    model = _model(fields)
    save_hf(model, tmp_path / "hf")
    proc = transformers.AutoImageProcessor.from_pretrained(tmp_path / "hf", use_fast=False)
    img = Image.fromarray(_photo(90, 48, 1))
    theirs = proc(img, return_tensors="np")["pixel_values"][0]
    ours = EvalTransform.for_model(model.cfg).image(img).numpy()
    assert _grey_levels(theirs, ours, model.cfg).max() > 10  # not the same pixels ...
    np.testing.assert_allclose(*_one_pixel_nearer_the_top_left(theirs, ours, rows_cols), atol=1e-5, rtol=0)  # shifted


@pytest.fixture(scope="module")
def fast_processed(peer, tmp_path_factory):
    """Each case's HF directory and test images through transformers in the peer environment (torchvision
    installed): per directory, the processor a user gets by default, with use_fast=True, and with backend="pil"."""
    work = tmp_path_factory.mktemp("hf_fast")
    models = {name: _model(fields) for name, (fields, _) in {**PROCESSORS, **HALF_OFFSETS}.items()}
    for name, model in models.items():
        save_hf(model, work / name)
    images = {"wide_noise": _noise(45, 61), "tall_photo": Image.fromarray(_photo(97, 50, 1)),
              "half_offset": Image.fromarray(_photo(90, 48, 1))}
    for stem, img in images.items():
        img.save(work / f"{stem}.png")
    (work / "job.json").write_text(json.dumps({"dirs": [str(work / n) for n in models],
                                               "images": [str(work / f"{s}.png") for s in images]}))
    info = peer(Path(__file__).with_name("hf_processor_peer.py"), work)
    return work, models, images, info


@pytest.mark.parametrize("name", PROCESSORS)
def test_the_fast_hf_image_processor_is_the_default_with_torchvision_and_within_one_grey_level(fast_processed, name):
    """transformers' fast processor (torchvision's uint8 resize), the one AutoImageProcessor gives by default
    (transformers 5) wherever torchvision is installed, and with use_fast=True: at most one grey level from
    vitlab's pixels on photos. How many values differ depends on the image and the CPU. Under 1% where Pillow
    resizes the width first, as torch always does (wide images, and every eval_resize=shorter resize), on CPUs
    where torch runs its AVX2 / AVX-512 uint8 kernels; with its generic kernels (ATEN_CPU_CAPABILITY=default:
    CPUs without AVX2, and other architectures) 17% of the bilinear values here. Up to a quarter where Pillow
    (13 and later) resizes the height first: tall images reduced more in height than in width, here 97x50 to
    32x32 and 36x36, 19% and 22% measured, as each pass rounds to whole levels before the other. On noise-like
    images the height-first case reaches several levels (up to 21 measured, bicubic). The slow processor in the
    same environment stays exact, so the difference is the backend's, not the versions'. The centre crop floors
    a half offset as the slow one does (the test before)."""
    work, models, images, info = fast_processed
    cfg, processor = models[name].cfg, PROCESSORS[name][1]
    assert info[f"{name}.default"] == info[f"{name}.use_fast"] == {"class": processor, "backend": "torchvision"}
    assert info[f"{name}.pil"] == {"class": processor + "Pil", "backend": "pil"}
    transform = EvalTransform.for_model(cfg)
    ours = {stem: transform.image(img).numpy() for stem, img in images.items()}
    load = lambda variant, stem: np.load(work / f"{name}.{variant}.{stem}.npy")  # noqa: E731
    for stem in ("wide_noise", "tall_photo"):
        np.testing.assert_allclose(load("pil", stem), ours[stem], atol=1e-5, rtol=0)
    wide = _grey_levels(load("default", "wide_noise"), ours["wide_noise"], cfg)
    tall = _grey_levels(load("default", "tall_photo"), ours["tall_photo"], cfg)
    assert wide.max() < 1.001 and tall.max() < 1.001, (wide.max(), tall.max())
    simd = info["cpu"] in ("AVX2", "AVX512")  # torch's x86 uint8 resize kernels; elsewhere its generic ones
    assert 0 < (wide > 0.5).mean() < (0.01 if simd else 0.3), ((wide > 0.5).mean(), info["cpu"])
    assert (tall > 0.5).mean() < (0.01 if simd and name == "bit" else 0.3), ((tall > 0.5).mean(), info["cpu"])
    for stem in images:
        np.testing.assert_array_equal(load("use_fast", stem), load("default", stem))


@pytest.mark.parametrize("name", HALF_OFFSETS)
def test_the_fast_hf_image_processor_crops_like_the_slow_one(fast_processed, name):
    work, models, images, _ = fast_processed
    cfg, rows_cols = models[name].cfg, HALF_OFFSETS[name][1]
    ours = EvalTransform.for_model(cfg).image(images["half_offset"]).numpy()
    for variant in ("default", "pil"):
        theirs = np.load(work / f"{name}.{variant}.half_offset.npy")
        assert _grey_levels(theirs, ours, cfg).max() > 10
        assert _grey_levels(*_one_pixel_nearer_the_top_left(theirs, ours, rows_cols), cfg).max() < 1.001


def test_a_deit_style_hf_processor_is_read_as_whole_image_squash_and_crop(tmp_path):
    save_hf(vitlab.VisionTransformer(vitlab.ViTConfig(**TINY)), tmp_path / "hf")
    # as facebook/deit-*-224 ship it: ints for both sizes, bicubic
    (tmp_path / "hf" / "preprocessor_config.json").write_text(json.dumps({
        "feature_extractor_type": "DeiTFeatureExtractor", "do_resize": True, "size": 256, "do_center_crop": True,
        "crop_size": 224, "resample": 3, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}))
    cfg = load_model(tmp_path / "hf").cfg
    assert _fields(cfg) == ("whole", 0.875, "bicubic")
