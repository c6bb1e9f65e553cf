"""Pretrained weights by name, end to end against a local server (tests/weights/conftest.py) that serves
small generated checkpoints at the catalog's own paths: official pre-linen and linen .npz, a hybrid, a
transformers directory and a timm safetensors repository on the hub side. Download, cache hit without a
request, resume, verification, retries, offline rules, concurrent processes, every way in by name."""
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import vitlab
from vitlab.weights import hub
from vitlab.weights.catalog import get_pretrained
from vitlab.weights.export import save_hf, save_timm
from vitlab.weights.official import vitlab_to_official
from vitlab.weights.official_hybrid import hybrid_from_vitlab

TINY = dict(embed_dim=16, depth=1, num_heads=2, mlp_dim=32)
SRC = str(Path(vitlab.__file__).resolve().parents[1])


def tiny(arch="vit_ti16", **kw):
    return vitlab.create_model(arch, **{**TINY, **kw}).eval()


def npz_bytes(model, names="linen") -> bytes:
    state = model.state_dict()
    arrays = vitlab_to_official({k: v for k, v in state.items() if not k.startswith("patch_embed.backbone.")},
                                model.cfg.num_heads, names)
    if model.cfg.backbone_layers is not None:
        arrays.update(hybrid_from_vitlab({k: v for k, v in state.items() if k.startswith("patch_embed.backbone.")}))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def serve(server, name, model, names="linen") -> str:
    """Put ``model`` as an official .npz at ``name``'s path on the server; the path served."""
    path = "/vit_models/" + get_pretrained(name).file
    server.files[path] = npz_bytes(model, names)
    return path


def same_outputs(a, b, size):
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=1e-6)


def test_download_then_cache_hit_without_a_request(weights_server):
    name = "vit_ti16.augreg_in21k_ft_in1k"  # linen names, 1000 ImageNet classes, 384 px
    src = tiny(img_size=384, num_classes=1000)
    path = serve(weights_server, name, src)
    model = vitlab.load_model(name)
    assert len(weights_server.gets(path)) == 1
    cached = Path(os.environ["VITLAB_CACHE"]) / "official" / get_pretrained(name).file
    assert cached.read_bytes() == weights_server.files[path]
    cfg = model.cfg
    assert cfg.img_size == (384, 384) and cfg.num_classes == 1000 and cfg.class_names[281] == "tabby, tabby cat"
    assert (cfg.mean, cfg.std, cfg.eval_resize, cfg.eval_interpolation) == ((0.5,) * 3, (0.5,) * 3, "whole", "bilinear")
    same_outputs(model, src, 384)
    again = vitlab.load_model("vit_tiny_patch16_384.augreg_in21k_ft_in1k")  # the timm alias: same file
    assert len(weights_server.log) == 1  # no second request of any kind
    same_outputs(again, src, 384)
    # create_model by tag, with a new head for fine-tuning: the catalog's names go with the old head
    ft = vitlab.create_model("vit_ti16", pretrained="augreg_in21k_ft_in1k", num_classes=3, **TINY)
    assert ft.cfg.num_classes == 3 and ft.cfg.class_names is None and ft.cfg.img_size == (384, 384)
    torch.testing.assert_close(ft.pos_embed, src.pos_embed)
    assert len(weights_server.log) == 1
    with pytest.raises(vitlab.errors.ConfigError, match="are for 'vit_ti16', not 'vit_s16'"):
        vitlab.create_model("vit_s16", pretrained=name)


def test_pre_linen_release_with_zeroed_head_loads_as_features(weights_server):
    name = "google/vit-base-patch16-224-in21k"  # -> vit_b16.orig_in21k: pre-linen names, pre-logits
    src = tiny("vit_b16", img_size=224, num_classes=7, representation_size=16)
    serve(weights_server, name, src, names="pre-linen")
    model = vitlab.load_model(name)
    assert model.cfg.num_classes == 0 and model.cfg.representation_size == 16
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():  # the features: pre-logits of the class token, as the released weights give them
        torch.testing.assert_close(model(x), src.forward_head(src.forward_features(x), pre_logits=True),
                                   rtol=0, atol=1e-6)
    made = vitlab.create_model("vit_b16", pretrained="orig_in21k", **{**TINY, "representation_size": 16})
    assert made.cfg.num_classes == 0 and made.cfg.representation_size == 16


def test_hybrid_by_name(weights_server):
    name = "r_vit_ti16.augreg_in21k_ft_in1k"
    src = tiny("r_vit_ti16", img_size=384, num_classes=1000)
    serve(weights_server, name, src)
    model = vitlab.load_model(name)
    assert model.cfg.backbone_layers == () and model.cfg.class_names[0] == "tench, Tinca tinca"
    same_outputs(model, src, 384)


def test_interrupted_download_resumes_and_ends_equal(weights_server, monkeypatch):
    name = "vit_s16.augreg_in21k"
    path = serve(weights_server, name, tiny(img_size=224, num_classes=21843))
    size = len(weights_server.files[path])
    monkeypatch.setattr(hub, "RETRIES", 0)
    weights_server.cut[path] = [size // 3]  # the connection drops a third of the way
    with pytest.raises(hub.DownloadError, match="resumed next time") as e:
        hub.fetch(name, progress=False)
    assert "IncompleteRead" in str(e.value) or "bytes received" in str(e.value)
    dest = hub.local_path(get_pretrained(name))
    part = dest.with_name(dest.name + ".part")
    assert part.stat().st_size == size // 3 and not dest.exists()
    assert hub.fetch(name, progress=False) == dest  # the next call asks for the rest only
    assert weights_server.gets(path)[-1][2] == f"bytes={size // 3}-"
    assert dest.read_bytes() == weights_server.files[path] and not part.exists()


def test_truncated_body_is_retried_then_named(weights_server):
    name = "vit_b32.augreg_in21k"
    path = serve(weights_server, name, tiny("vit_b32", img_size=224, num_classes=5))
    size = len(weights_server.files[path])
    weights_server.cut[path] = [size // 2, 100]  # two drops (after half the file, then 100 more bytes), then the rest
    dest = hub.fetch(name, progress=False)
    assert dest.read_bytes() == weights_server.files[path]
    assert [g[2] for g in weights_server.gets(path)] == [None, f"bytes={size // 2}-", f"bytes={size // 2 + 100}-"]
    other = "vit_s32.augreg_in21k"
    path = serve(weights_server, other, tiny("vit_s32", img_size=224, num_classes=5))
    weights_server.cut[path] = [10] * (hub.RETRIES + 1)
    with pytest.raises(hub.DownloadError, match=rf"could not download {weights_server.url}/vit_models/augreg/S_32.* "
                                                rf"\({hub.RETRIES + 1} attempts; last: .*put it at .*S_32"):
        hub.fetch(other, progress=False)
    assert len(weights_server.gets(path)) == hub.RETRIES + 1


def test_server_errors_are_retried_a_bounded_number_of_times(weights_server):
    name = "vit_l16.augreg_in21k"
    path = serve(weights_server, name, tiny("vit_l16", img_size=224, num_classes=5))
    weights_server.fail[path] = hub.RETRIES  # every retry but the last gets a 503
    assert hub.fetch(name, progress=False).read_bytes() == weights_server.files[path]
    name = "r26_vit_s32.augreg_in21k"
    path = "/vit_models/" + get_pretrained(name).file
    weights_server.files[path] = b"x" * 100
    weights_server.fail[path] = 100
    with pytest.raises(hub.DownloadError, match=rf"{hub.RETRIES + 1} attempts; last: HTTP 503"):
        hub.fetch(name, progress=False)
    assert len(weights_server.gets(path)) == hub.RETRIES + 1
    weights_server.files.pop(path)
    weights_server.fail.pop(path)
    with pytest.raises(hub.DownloadError, match="HTTP 404"):  # a missing file is not retried
        hub.fetch(name, progress=False)
    assert len(weights_server.gets(path)) == hub.RETRIES + 2


def test_corrupted_file_is_refused_and_deleted(weights_server):
    name = "vit_b16.augreg_in21k"
    path = serve(weights_server, name, tiny("vit_b16", img_size=224, num_classes=5))
    weights_server.corrupt.add(path)
    md5 = __import__("hashlib").md5(weights_server.files[path]).hexdigest()
    with pytest.raises(hub.DownloadError, match=rf"{weights_server.url}/vit_models/augreg/B_16.*md5: expected {md5}, "
                                                r"got [0-9a-f]{32}.*deleted, not loaded"):
        vitlab.load_model(name)
    dest = hub.local_path(get_pretrained(name))
    assert not dest.exists() and not dest.with_name(dest.name + ".part").exists()


def test_offline_error_names_url_and_path_and_a_file_put_by_hand_is_used(weights_server, monkeypatch):
    name = "vit_ti16.augreg_in21k"
    src = tiny(img_size=224, num_classes=21843)
    path = serve(weights_server, name, src)
    dest = hub.local_path(get_pretrained(name))
    monkeypatch.setenv("VITLAB_OFFLINE", "1")
    with pytest.raises(hub.DownloadError) as e:
        vitlab.load_model(name)
    assert f"Download {weights_server.url}{path} on a machine with a network and put it at {dest}" in str(e.value)
    assert weights_server.log == []
    dest.parent.mkdir(parents=True)
    dest.write_bytes(weights_server.files[path])  # by hand
    same_outputs(vitlab.load_model(name), src, 224)
    assert weights_server.log == []


def test_no_network_names_url_and_path(weights_server, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("VITLAB_OFFICIAL_URL", f"http://127.0.0.1:{port}/vit_models")
    name = "vit_s16.augreg_in21k_ft_in1k"
    dest = hub.local_path(get_pretrained(name))
    with pytest.raises(hub.DownloadError, match=rf"could not download http://127.0.0.1:{port}/vit_models/augreg/S_16"
                                                rf".*cannot reach the server.*put it at {dest}"):
        hub.fetch(name, progress=False)


def test_two_processes_download_once(weights_server, tmp_path):
    name = "vit_s16.augreg_in21k"
    path = serve(weights_server, name, tiny(img_size=224, num_classes=21843))
    weights_server.slow[path] = 1.5  # long enough for the second process to arrive while the first downloads
    code = f"from vitlab.weights.hub import fetch; print(fetch({name!r}, progress=False))"
    env = {**os.environ, "PYTHONPATH": SRC}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs[0] == outs[1] == str(hub.local_path(get_pretrained(name)))
    assert len(weights_server.gets(path)) == 1
    assert Path(outs[0]).read_bytes() == weights_server.files[path]


HUB_SCRIPT = r"""
import json, sys, torch, vitlab
out = {}
torch.manual_seed(0)
x = torch.randn(1, 3, 224, 224)
for name in sys.argv[1:]:
    m = vitlab.load_model(name)
    with torch.no_grad():
        out[name] = {"logits": m(x)[0, :5].tolist(), "classes": m.cfg.num_classes,
                     "first": (m.cfg.class_names or ["-"])[0], "resize": m.cfg.eval_resize,
                     "crop": m.cfg.eval_crop_pct, "interp": m.cfg.eval_interpolation}
print(json.dumps(out))
"""


def test_hub_names_through_a_local_endpoint(weights_server, tmp_path):
    """huggingface_hub itself, pointed at the local server by HF_ENDPOINT (its resolve URLs and headers),
    its own cache under HF_HOME; then HF_HUB_OFFLINE=1 reads that cache with no request."""
    torch.manual_seed(1)
    hf_model = tiny("vit_b16", img_size=224, num_classes=4, class_names=("a", "b", "c", "d"), act="gelu")
    hf_dir = save_hf(hf_model, tmp_path / "hf")
    for f in hf_dir.iterdir():
        weights_server.files[f"/google/vit-tiny-test/{f.name}"] = f.read_bytes()
    # a timm file tells no head count: the width must be a registered one (192: Ti, 3 heads), as real ones are
    timm_model = tiny("vit_b16", img_size=224, num_classes=1000, act="gelu", embed_dim=192, num_heads=3)
    timm_file = save_timm(timm_model, tmp_path / "timm.safetensors")
    repo = "/" + get_pretrained("vit_b16.augreg2_in21k_ft_in1k").hub_repo
    weights_server.files[repo + "/model.safetensors"] = timm_file.read_bytes()
    weights_server.files[repo + "/config.json"] = json.dumps({  # timm's hub config.json layout
        "architecture": "vit_base_patch16_224", "num_classes": 1000, "num_features": 192, "global_pool": "token",
        "pretrained_cfg": {"tag": "augreg2_in21k_ft_in1k", "input_size": [3, 224, 224], "interpolation": "bicubic",
                           "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop_pct": 0.9, "crop_mode": "center",
                           "num_classes": 1000}}).encode()
    bad = "/someone/pickled"  # a repository whose weights are a pickle asking for more than tensors
    weights_server.files[bad + "/config.json"] = (hf_dir / "config.json").read_bytes()
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2), "obj": __import__("collections").OrderedDict(a=Path("x"))}, buf)
    weights_server.files[bad + "/pytorch_model.bin"] = buf.getvalue()
    broken = "/someone/corrupt"  # bytes that do not hash to the sha256 the hub announces
    weights_server.files[broken + "/config.json"] = (hf_dir / "config.json").read_bytes()
    weights_server.files[broken + "/model.safetensors"] = (hf_dir / "model.safetensors").read_bytes()
    weights_server.corrupt.add(broken + "/model.safetensors")

    env = {**os.environ, "PYTHONPATH": SRC, "HF_ENDPOINT": weights_server.url, "HF_HOME": str(tmp_path / "hf_home"),
           "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    names = ["hf-hub:google/vit-tiny-test", "vit_base_patch16_224.augreg2_in21k_ft_in1k"]
    run = subprocess.run([sys.executable, "-c", HUB_SCRIPT, *names], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    torch.manual_seed(0)  # the x the subprocess drew
    x = torch.randn(1, 3, 224, 224)
    hf_out, timm_out = got[names[0]], got[names[1]]
    with torch.no_grad():
        np.testing.assert_allclose(hf_out["logits"], hf_model(x)[0, :5].numpy(), atol=1e-5)
        np.testing.assert_allclose(timm_out["logits"], timm_model(x)[0, :5].numpy(), atol=1e-5)
    assert hf_out["classes"] == 4 and hf_out["first"] == "a"
    assert timm_out["classes"] == 1000 and timm_out["first"] == "tench, Tinca tinca"
    assert (timm_out["resize"], timm_out["crop"], timm_out["interp"]) == ("shorter", 0.9, "bicubic")
    n_requests = len(weights_server.log)
    assert any(p.endswith("/resolve/main/model.safetensors") for _, p, _ in weights_server.log)

    env["HF_HUB_OFFLINE"] = "1"
    again = subprocess.run([sys.executable, "-c", HUB_SCRIPT, *names], env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout.strip().splitlines()[-1]) == got
    assert len(weights_server.log) == n_requests  # offline: the hub cache only

    env.pop("HF_HUB_OFFLINE")
    refused = subprocess.run([sys.executable, "-m", "vitlab", "info", "hf-hub:someone/pickled"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "refused to load" in refused.stderr and "never runs code" in refused.stderr
    corrupt = subprocess.run([sys.executable, "-m", "vitlab", "info", "hf-hub:someone/corrupt"], env=env,
                             capture_output=True, text=True, timeout=300)
    sha = __import__("hashlib").sha256(weights_server.files[broken + "/model.safetensors"]).hexdigest()
    assert corrupt.returncode == 2 and f"does not match the sha256 the hub published (expected {sha}" in corrupt.stderr
    assert not any(p.name == sha for p in (tmp_path / "hf_home").rglob("models--someone--corrupt/**/*"))  # deleted
