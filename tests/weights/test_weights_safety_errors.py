"""Loading never runs code from a file; bad or foreign files fail with errors that say what and why."""
import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import vitlab
from vitlab.cli import main
from vitlab.weights import load_model, load_weights


class Payload:
    """Unpickling this runs a shell command that creates the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def tiny(**kw):
    cfg = dict(img_size=32, patch_size=8, embed_dim=64, depth=1, num_heads=4, mlp_dim=128, num_classes=3)
    return vitlab.VisionTransformer(vitlab.ViTConfig(**{**cfg, **kw}))


@pytest.mark.parametrize("how", ["legacy-pickle.pth", "torch-zip.bin"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, how):
    marker = tmp_path / "pwned"
    path = tmp_path / how
    obj = {"state_dict": {"head.weight": torch.zeros(3, 64)}, "evil": Payload(marker)}
    if how.startswith("legacy"):
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=2)
    else:
        torch.save(obj, path)
    with pytest.raises(ValueError, match="refused to load .*never runs code"):
        load_weights(tiny(), path)
    assert main(["info", str(path)]) == 2
    assert not marker.exists()


def test_npz_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, **{"embedding/kernel": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(ValueError, match="refused to load"):
        load_model(path)


def test_mis_shaped_missing_and_unexpected_keys_are_listed(tmp_path):
    state = tiny().state_dict()
    state["blocks.0.mlp.fc1.weight"] = torch.zeros(100, 64)
    del state["norm.bias"]
    state["blocks.0.ls1.gamma"] = torch.ones(64)
    save_file(state, tmp_path / "m.safetensors")
    model = tiny()
    with pytest.raises(ValueError) as e:
        load_weights(model, tmp_path / "m.safetensors")
    msg = str(e.value)
    assert "blocks.0.mlp.fc1.weight: checkpoint (100, 64) vs model (128, 64)" in msg
    assert "missing (1): norm.bias" in msg and "unexpected (1): blocks.0.ls1.gamma" in msg
    report = load_weights(model, tmp_path / "m.safetensors", strict=False)
    assert report["missing"] == ["norm.bias"] and report["unexpected"] == ["blocks.0.ls1.gamma"]
    assert torch.equal(model.norm.weight, state["norm.weight"])  # what fits was loaded


@pytest.mark.parametrize("content", [b"hello, I am not a checkpoint", b"PK\x03\x04broken zip", b"\x10\x00\x00\x00\x00\x00\x00\x00{bad"])
def test_unknown_or_corrupt_files_name_the_file_and_the_formats(tmp_path, content):
    path = tmp_path / "weights.bin"
    path.write_bytes(content)
    with pytest.raises(ValueError) as e:
        load_weights(tiny(), path)
    assert str(path) in str(e.value) and "Hugging Face ViT directory" in str(e.value)


def test_missing_path_and_foreign_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nope.npz")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="model_type='bert'"):
        load_model(tmp_path / "d")
