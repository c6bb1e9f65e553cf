"""No file vitlab reads can run code: training checkpoints (directly, via --resume and via a run
directory's own checkpoints/), data .npz files, image-folder caches and Hugging Face directories holding
a pickle. Each file below would create a marker file if unpickled; each read is refused (or, for a
cache, ignored and rebuilt) and the marker never appears."""
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from vitlab.cli import main
from vitlab.data import load_image_folder, load_npz, open_dataset
from vitlab.train import load_checkpoint

TINY = ["data.dataset=digits", "data.train_limit=64", "data.batch_size=32", "model.name=vit_mnist", "model.img_size=8",
        "model.patch_size=4", "model.in_chans=1", "model.embed_dim=16", "model.depth=1", "model.num_heads=2",
        "model.mlp_dim=32", "schedule.epochs=1", "train.threads=1"]


class Payload:
    """Unpickling this runs a shell command that creates the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def marker(tmp_path):
    m = tmp_path / "pwned"
    yield m
    assert not m.exists(), "code from a file was executed"


def evil_checkpoint(path, marker, legacy=False):
    obj = {"step": 1, "model": {"w": torch.zeros(2)}, "config": {}, "evil": Payload(marker)}
    path.parent.mkdir(parents=True, exist_ok=True)
    if legacy:
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=2)
    else:
        torch.save(obj, path)
    return path


@pytest.mark.parametrize("legacy", [False, True])
def test_training_checkpoint_is_refused(tmp_path, marker, legacy):
    path = evil_checkpoint(tmp_path / "step_00000001.pt", marker, legacy)
    with pytest.raises(ValueError, match="not a readable vitlab training checkpoint"):
        load_checkpoint(path)


def test_resume_from_a_file_is_refused(tmp_path, marker, capsys):
    path = evil_checkpoint(tmp_path / "evil.pt", marker)
    assert main(["train", "--out", str(tmp_path / "run"), "--no-progress", "--resume", str(path), *TINY]) == 2
    assert "not a readable vitlab training checkpoint" in capsys.readouterr().err


def test_run_directory_with_a_planted_checkpoint_is_refused(tmp_path, marker, capsys):
    run = tmp_path / "run"
    evil_checkpoint(run / "checkpoints" / "step_00000005.pt", marker)  # picked up by the default resume
    assert main(["train", "--out", str(run), "--no-progress", *TINY]) == 2
    assert "step_00000005.pt" in capsys.readouterr().err


@pytest.mark.parametrize("layout", ["x", "x_train"])
def test_data_npz_with_pickled_objects_is_refused(tmp_path, marker, layout):
    path = tmp_path / "evil.npz"
    np.savez(path, **{layout: np.array([Payload(marker)], dtype=object), layout.replace("x", "y"): np.zeros(1, int)})
    with pytest.raises(ValueError):
        load_npz(path, split="train")
    with pytest.raises(ValueError):
        open_dataset(str(path), "train")


def test_npz_classes_with_pickled_objects_are_refused(tmp_path, marker):
    path = tmp_path / "evil.npz"
    np.savez(path, x=np.zeros((2, 4, 4), np.uint8), y=np.zeros(2, int), classes=np.array([Payload(marker)], dtype=object))
    with pytest.raises(ValueError):
        load_npz(path)


def test_image_folder_cache_with_pickled_objects_is_ignored_and_rebuilt(tmp_path, marker, capsys):
    root = tmp_path / "imgs"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        Image.new("L", (6, 6), 40 if c == "a" else 200).save(root / c / "0.png")
    cache = tmp_path / "cache.npz"
    first = load_image_folder(root, cache=cache, progress=False)
    with np.load(cache, allow_pickle=False) as z:  # keep the fingerprint, so the cache would be used
        arrays = {k: z[k] for k in z.files}
    for key in ("skipped", "classes"):
        evil = dict(arrays, **{key: np.array([Payload(marker)], dtype=object)})
        with open(cache, "wb") as f:
            np.savez(f, **evil)
        again = load_image_folder(root, cache=cache, progress=False)
        assert again.classes == ["a", "b"] and torch.equal(again.images, first.images)
        assert "ignoring unreadable cache" in capsys.readouterr().err


def test_hugging_face_directory_with_a_pickled_bin_is_refused(tmp_path, marker, capsys):
    d = tmp_path / "hf"
    d.mkdir()
    (d / "config.json").write_text('{"model_type": "vit", "hidden_size": 16, "num_hidden_layers": 1, '
                                   '"num_attention_heads": 2, "intermediate_size": 32}')
    torch.save({"vit.embeddings.cls_token": torch.zeros(1, 1, 16), "evil": Payload(marker)}, d / "pytorch_model.bin")
    assert main(["info", str(d)]) == 2
    assert main(["eval", str(d), "--data", "digits"]) == 2
    assert capsys.readouterr().err.count("refused to load") == 2
