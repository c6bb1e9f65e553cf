"""Today's backbones by name: every DINOv2, SigLIP and CLIP entry of weights.backbones is a catalog entry,
listed by `vitlab pretrained`, downloaded through the hub code (huggingface_hub pointed at the local server
of conftest.py, serving small timm files at the catalog's own repository paths) and loaded with the entry's
resolution, normalisation, test-time preprocessing and activation, not timm's."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import vitlab
from vitlab.cli import main
from vitlab.models.registry import get_config, list_models
from vitlab.weights.backbones import BACKBONE_WEIGHTS
from vitlab.weights.catalog import catalog, get_pretrained, pretrained_for
from vitlab.weights.export import save_timm

SRC = str(Path(vitlab.__file__).resolve().parents[1])
# A timm file tells no head count: the width is a registered one (192: Ti, 3 heads), the depth one block.
SMALL = dict(embed_dim=192, depth=1, num_heads=3, mlp_dim=384)
# name -> what timm's hub config.json says of the same file (its pretrained_cfg: timm's preprocessing, which
# the catalog's must replace)
SERVED = {
    "vit_s14_reg4_dinov2.lvd142m": dict(input_size=[3, 518, 518], crop_pct=1.0, mean=[0.485, 0.456, 0.406],
                                        std=[0.229, 0.224, 0.225], num_classes=0),
    "vit_b16_siglip_224.webli": dict(input_size=[3, 224, 224], crop_pct=0.9, mean=[0.5] * 3, std=[0.5] * 3,
                                     num_classes=0),
    "vit_b16_clip.openai": dict(input_size=[3, 224, 224], crop_pct=0.9, mean=[0.48145466, 0.4578275, 0.40821073],
                                std=[0.26862954, 0.26130258, 0.27577711], num_classes=512),
}

LOAD_SCRIPT = r"""
import json, sys, torch, vitlab
out = {}
for name in sys.argv[1:]:
    m = vitlab.load_model(name)
    torch.manual_seed(0)
    x = torch.randn(1, 3, *m.cfg.img_size)
    with torch.no_grad():
        y = m(x)  # pooled features, or CLIP's projection of them
    c = m.cfg
    out[name] = {"out": y[0, :6].tolist(), "img_size": list(c.img_size), "mean": list(c.mean), "std": list(c.std),
                 "resize": c.eval_resize, "crop": c.eval_crop_pct, "interp": c.eval_interpolation, "act": c.act,
                 "classes": c.num_classes, "reg_tokens": c.reg_tokens, "classifier": c.classifier}
# create_model by tag builds the registered architecture; the small served file needs its shape given
m = vitlab.create_model("vit_b16_clip", pretrained="openai", embed_dim=192, depth=1, num_heads=3, mlp_dim=384)
out["create_model"] = {"act": m.cfg.act, "classes": m.cfg.num_classes, "crop": m.cfg.eval_crop_pct}
print(json.dumps(out))
"""


def test_every_backbone_is_one_catalog_entry_with_unique_names():
    models = set(list_models())
    entries = [e for e in catalog() if e.arch in BACKBONE_WEIGHTS]
    assert sorted(e.arch for e in entries) == sorted(BACKBONE_WEIGHTS)  # one each
    keys = [k for e in catalog() for k in (e.name, *e.aliases)]
    assert len(keys) == len(set(keys))  # no name or alias means two entries
    for e in entries:
        w = BACKBONE_WEIGHTS[e.arch]
        assert e.arch in models and e.source == "hf-hub" and e.hub_repo == w.timm
        timm_name = w.timm.removeprefix("timm/")
        assert e.name == f"{e.arch}.{timm_name.split('.')[1]}" and e.tag in ("lvd142m", "webli", "openai")
        assert {timm_name, w.timm} | ({w.hf} if w.hf else set()) <= set(e.aliases)
        assert all(get_pretrained(a) is e for a in e.aliases)
        assert e.img_size == w.img_size and (e.mean, e.std) == (w.mean, w.std)
        assert e.license == {"lvd142m": "Apache-2.0", "webli": "Apache-2.0", "openai": "MIT"}[e.tag]
        assert e.pretrain == {"lvd142m": "LVD-142M", "webli": "WebLI", "openai": "WIT-400M (OpenAI)"}[e.tag]
        # the entry's fields on the registered architecture: the original model (its activation back)
        cfg = get_config(e.arch, **e.config_fields())
        registered = get_config(e.arch)
        assert cfg.act == registered.act and cfg.img_size == (w.img_size, w.img_size)
        assert (cfg.eval_resize, cfg.eval_crop_pct, cfg.eval_interpolation) == (w.eval_resize, w.eval_crop_pct,
                                                                                w.eval_interpolation)
    assert get_pretrained("facebook/dinov2-with-registers-small").name == "vit_s14_reg4_dinov2.lvd142m"
    assert get_pretrained("vit_large_patch14_clip_quickgelu_224.openai").name == "vit_l14_clip.openai"
    assert pretrained_for("vit_b16_siglip_384", "webli").hub_repo == "timm/vit_base_patch16_siglip_384.webli"
    assert get_pretrained("vit_b16_clip.openai").num_classes == 512  # CLIP's projection, kept as the head


def test_pretrained_lists_the_backbones(capsys):
    assert main(["pretrained", "*_dinov2.*"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("vit_s14_reg4_dinov2.lvd142m "))
    assert row.split()[1:7] == ["vit_s14_reg4_dinov2", "LVD-142M", "224", "0", "unknown", "not"]
    assert row.split()[-2:] == ["Apache-2.0", "hub"]
    assert "also: vit_small_patch14_reg4_dinov2.lvd142m, timm/vit_small_patch14_reg4_dinov2.lvd142m, " \
           "facebook/dinov2-with-registers-small" in out
    assert sum(line.endswith(" hub") for line in out.splitlines()) == 8 and "siglip" not in out
    assert main(["pretrained", "*clip*"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[:2] + line.split()[-3:] for line in out.splitlines() if ".openai " in line] == [
        ["vit_b16_clip.openai", "vit_b16_clip", "published", "MIT", "hub"],
        ["vit_l14_clip.openai", "vit_l14_clip", "published", "MIT", "hub"]]
    assert "WIT-400M (OpenAI)" in out and " 512 " in out and " 768 " in out
    assert main(["pretrained", "vit_b16_siglip_384.*"]) == 0
    row = capsys.readouterr().out.splitlines()[2].split()
    assert row[:4] == ["vit_b16_siglip_384.webli", "vit_b16_siglip_384", "WebLI", "384"] and "Apache-2.0" in row


def _small(arch: str, num_classes: int) -> torch.nn.Module:
    """A one-block model of ``arch``'s family at a registered width, every parameter random (so LayerScale,
    the MAP head and the activation all move the output)."""
    torch.manual_seed(len(arch))
    model = vitlab.create_model(arch, **SMALL, num_classes=num_classes)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model.eval()


def test_backbones_load_by_name_through_the_hub_with_their_preprocessing(weights_server, tmp_path):
    files = {}
    for name, pretrained_cfg in SERVED.items():
        e = get_pretrained(name)
        model = _small(e.arch, pretrained_cfg["num_classes"])
        files[name] = save_timm(model, tmp_path / f"{e.arch}.safetensors")
        repo = "/" + e.hub_repo
        weights_server.files[repo + "/model.safetensors"] = files[name].read_bytes()
        weights_server.files[repo + "/config.json"] = json.dumps({  # timm's hub config.json layout
            "architecture": e.hub_repo.removeprefix("timm/").split(".")[0], "num_classes": pretrained_cfg["num_classes"],
            "num_features": SMALL["embed_dim"], "pretrained_cfg": {
                "tag": e.tag, "interpolation": "bicubic", "crop_mode": "center", **pretrained_cfg}}).encode()
    env = {**os.environ, "PYTHONPATH": SRC, "HF_ENDPOINT": weights_server.url, "HF_HOME": str(tmp_path / "hf_home"),
           "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    run = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, *SERVED], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    for name in SERVED:
        e, w, g = get_pretrained(name), BACKBONE_WEIGHTS[get_pretrained(name).arch], got[name]
        assert any(p == f"/{e.hub_repo}/resolve/main/model.safetensors" for _, p, _ in weights_server.log), name
        assert g["img_size"] == [w.img_size] * 2 and (tuple(g["mean"]), tuple(g["std"])) == (w.mean, w.std), name
        assert (g["resize"], g["crop"], g["interp"]) == (w.eval_resize, w.eval_crop_pct, w.eval_interpolation), name
        assert g["act"] == get_config(e.arch).act and g["classes"] == e.num_classes, name
        # the same file read by path with the table's overrides computes the same
        ref = vitlab.load_model(files[name], **w.load_overrides("timm"))
        torch.manual_seed(0)
        x = torch.randn(1, 3, *ref.cfg.img_size)
        with torch.no_grad():
            want = ref(x)
        np.testing.assert_allclose(g["out"], want[0, :6].numpy(), atol=1e-5, err_msg=name)
    dino, siglip, clip = (got[n] for n in SERVED)
    assert dino["img_size"] == [224, 224] and dino["crop"] == pytest.approx(0.875) and dino["reg_tokens"] == 4
    assert siglip["act"] == "gelu_tanh" and siglip["classifier"] == "map" and siglip["crop"] == 1.0
    assert clip["act"] == "quick_gelu" and clip["classes"] == 512 and clip["crop"] == 1.0
    assert got["create_model"] == {"act": "quick_gelu", "classes": 512, "crop": 1.0}
