"""Today's backbones against timm: for every registry name of DINOv2, SigLIP and CLIP, weights timm writes
(random, every parameter) load through ``load_model(file)`` and give timm's features, pooled features and
logits (<= 1e-5, fp32); ``vitlab convert --to timm`` writes files timm loads back to the same outputs; a
518 px DINOv2 used at 224 px matches timm's dynamic image size. Widths and layouts are the registered ones,
depth 1 (two full-depth models too). timm runs in the peer environment: one process writes every model,
another reads back what vitlab wrote."""
import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from vitlab.models.registry import get_config
from vitlab.weights import export, load_model

PEER = __file__.rsplit("/", 1)[0] + "/peers/timm_model.py"
TOL = 1e-5
# Config fields a file must reproduce for its registry name (act only where timm's default is the registry's).
ARCH = ("patch_size", "embed_dim", "depth", "num_heads", "mlp_dim", "classifier", "reg_tokens", "no_embed_class",
        "pre_norm", "patch_bias", "qk_norm", "norm_eps", "num_classes", "img_size")

# registry name -> (timm name, image size at depth 1, load_model overrides). timm's *_quickgelu CLIP models
# need act= (no shape says it); its SigLIP models use exact GELU where the registry has big_vision's tanh GELU.
CASES = {
    **{f"vit_{s}14{r}_dinov2": (f"vit_{t}_patch14{r}_dinov2", 56, {})
       for s, t in (("s", "small"), ("b", "base"), ("l", "large"), ("g", "giant")) for r in ("", "_reg4")},
    **{f"vit_b16_siglip_{n}": (f"vit_base_patch16_siglip_{n}", n, {}) for n in (224, 256, 384)},
    "vit_so400m14_siglip_224": ("vit_so400m_patch14_siglip_224", 56, {}),
    "vit_so400m14_siglip_378": ("vit_so400m_patch14_siglip_378", 56, {}),
    "vit_b16_clip": ("vit_base_patch16_clip_quickgelu_224", 64, {"act": "quick_gelu"}),
    "vit_l14_clip": ("vit_large_patch14_clip_quickgelu_224", 56, {"act": "quick_gelu"}),
}
# Beyond the registry: timm's CLIP with exact GELU (no argument needed), and QK-norm.
EXTRA = {
    "clip_gelu": ("vit_base_patch16_clip_224", dict(depth=1, num_classes=7, img_size=64), {}),
    "qk_norm": ("vit_small_patch14_dinov2", dict(depth=1, num_classes=7, img_size=56, qk_norm=True), {}),
}
FULL = {  # the registered depth too, at 224 px: one of each family
    "vit_s14_reg4_dinov2": ("vit_small_patch14_reg4_dinov2", dict(img_size=224, num_classes=0), {}),
    "vit_b16_siglip_224": ("vit_base_patch16_siglip_224", dict(img_size=224, num_classes=0), {}),
    "vit_b16_clip": ("vit_base_patch16_clip_quickgelu_224", dict(img_size=224, num_classes=0), {"act": "quick_gelu"}),
}
# DINOv2 pretrained at 518 px, used at 224 px: timm resamples on the fly (dynamic_img_size).
RESAMPLE = {r: (f"vit_small_patch14{r}_dinov2", dict(depth=1, num_classes=7, dynamic_img_size=True))
            for r in ("", "_reg4")}


def _jobs():
    out = {name: (timm_name, dict(depth=1, num_classes=7, img_size=size), kw)
           for name, (timm_name, size, kw) in CASES.items()}
    out.update(EXTRA)
    out.update({f"full:{n}": full for n, full in FULL.items()})
    out.update({f"resample:{r}": (t, kw, {}) for r, (t, kw) in RESAMPLE.items()})
    return out


JOBS = _jobs()


def _input(tmp, size):
    path = tmp / f"x{size}.npy"
    if not path.exists():
        np.save(path, np.random.default_rng(size).standard_normal((2, 3, size, size)).astype(np.float32))
    return path


@pytest.fixture(scope="module")
def written(peer, tmp_path_factory):
    """Every job's timm model, random, written to a file and run by timm."""
    tmp = tmp_path_factory.mktemp("timm")
    jobs = []
    for key, (name, kw, _) in JOBS.items():
        size = 224 if key.startswith("resample:") else kw["img_size"]
        jobs.append(dict(name=name, kwargs=kw, random=True, weights_out=str(tmp / f"{key}.safetensors"),
                         inputs=[str(_input(tmp, size))], out=str(tmp / key)))
    (tmp / "jobs.json").write_text(json.dumps(jobs))
    params = peer(PEER, tmp / "jobs.json", timeout=1200)["params"]
    return tmp, dict(zip(JOBS, params))


def _outputs(model, x):
    with torch.no_grad():
        feats = model.forward_features(x)
        return {"features": feats, "pooled": model.forward_head(feats, pre_logits=True), "logits": model.forward_head(feats)}


def _compare(model, folder, x_path, names=("features", "pooled", "logits")):
    got = _outputs(model, torch.from_numpy(np.load(x_path)))
    return {n: (got[n] - torch.from_numpy(np.load(folder / f"{n}_0.npy"))).abs().max().item() for n in names}


@pytest.mark.parametrize("key", list(CASES) + list(EXTRA))
def test_timm_file_loads_with_the_same_outputs(written, key):
    tmp, params = written
    name, kw, overrides = JOBS[key]
    model = load_model(tmp / f"{key}.safetensors", **overrides)
    assert sum(p.numel() for p in model.parameters()) == params[key]
    diff = _compare(model, tmp / key, _input(tmp, kw["img_size"]))
    assert max(diff.values()) <= TOL, diff
    if key in CASES:  # the file is the registry's architecture
        want = get_config(key, depth=1, img_size=kw["img_size"], num_classes=7, **overrides)
        assert {f: getattr(model.cfg, f) for f in ARCH} == {f: getattr(want, f) for f in ARCH}
        assert (model.cfg.init_values is None) == (want.init_values is None)
        if "siglip" not in key:
            assert model.cfg.act == want.act


@pytest.mark.parametrize("key", list(FULL))
def test_full_depth_timm_file_is_the_registered_model(written, key):
    tmp, params = written
    _, _, overrides = FULL[key]
    model = load_model(tmp / f"full:{key}.safetensors", **overrides)
    want = get_config(key, img_size=224)
    assert {f: getattr(model.cfg, f) for f in ARCH} == {f: getattr(want, f) for f in ARCH}
    diff = _compare(model, tmp / f"full:{key}", _input(tmp, 224), ("features", "pooled"))
    assert max(diff.values()) <= TOL, diff


@pytest.mark.parametrize("reg", list(RESAMPLE))
def test_dinov2_518_used_at_224_matches_timm_dynamic_size(written, reg):
    tmp, _ = written
    path = tmp / f"resample:{reg}.safetensors"
    assert load_model(path).cfg.img_size == (518, 518)
    for model in (load_model(path, img_size=224), load_model(path, dynamic_img_size=True)):
        diff = _compare(model, tmp / f"resample:{reg}", _input(tmp, 224))
        assert max(diff.values()) <= TOL, diff


def test_convert_to_timm_loads_back_equal(written, peer):
    """vitlab -> timm file -> timm.create_model(...).load_state_dict(strict=True): timm's outputs are exactly
    those of the file timm wrote (the same numbers in the same places)."""
    tmp, _ = written
    keys = list(CASES) + list(EXTRA)
    jobs = []
    for key in keys:
        name, kw, overrides = JOBS[key]
        dst = export(load_model(tmp / f"{key}.safetensors", **overrides), tmp / f"back-{key}.safetensors", "timm")
        jobs.append(dict(name=name, kwargs=kw, weights_in=str(dst), inputs=[str(_input(tmp, kw["img_size"]))],
                         out=str(tmp / f"back-{key}")))
    (tmp / "back.json").write_text(json.dumps(jobs))
    peer(PEER, tmp / "back.json", timeout=1200)
    for key in keys:
        for n in ("features", "pooled", "logits"):
            assert np.array_equal(np.load(tmp / f"back-{key}" / f"{n}_0.npy"), np.load(tmp / key / f"{n}_0.npy")), key


def test_registry_configs_round_trip_through_json():
    for name in list(CASES):
        cfg = get_config(name)
        assert type(cfg).from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg, name
        assert asdict(cfg)["num_classes"] == 0
