"""The model that ships with vitlab (vitlab/fmnist): a trimmed run directory in the package (config.yaml,
final.json, model/). It loads by name with no network, predicts and serves by name, and still scores the
test accuracy its training run recorded: this fails when the model code changes what the weights compute."""
import json

import pytest
from PIL import Image

import vitlab
from vitlab.cli import main
from vitlab.weights.catalog import get_pretrained
from vitlab.weights.hub import local_path, shipped_path

RUN = local_path(get_pretrained("vitlab/fmnist"))
FINAL = json.loads((RUN / "final.json").read_text())


def test_shipped_files_and_entry(monkeypatch):
    monkeypatch.setenv("VITLAB_OFFLINE", "1")  # no download: it is in the package
    for f in ("config.yaml", "final.json", "model/config.json", "model/model.safetensors"):
        assert (RUN / f).is_file(), f
    entry = get_pretrained("vitlab/fmnist")
    assert entry.top1 == FINAL["top1"] and entry.source == "vitlab" and entry.size_mib is not None
    model = vitlab.load_model("vitlab/fmnist")
    assert model.cfg.num_classes == 10 and model.cfg.in_chans == 1
    assert list(model.cfg.class_names)[:2] == ["T-shirt/top", "Trouser"]


def test_shipped_model_scores_its_recorded_test_accuracy():
    from vitlab.evaluate.metrics import evaluate_checkpoint

    summary = evaluate_checkpoint(shipped_path("vitlab/fmnist"), None, device="cpu", workers=0)
    assert summary["n"] == FINAL["n"] == 10000
    assert summary["top1"] == pytest.approx(FINAL["top1"], abs=0.05)  # at most 5 of 10,000 images differ


def test_predict_and_serve_by_name(tmp_path, capsys):
    from vitlab.data import open_dataset

    image, label = open_dataset("fashion_mnist", "test")[0]  # a test image, as a user's PNG
    Image.fromarray(image[0].numpy()).save(tmp_path / "shoe.png")
    assert main(["predict", "vitlab/fmnist", str(tmp_path / "shoe.png"), "--topk", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert any(name in out for name in vitlab.load_model("vitlab/fmnist").cfg.class_names)

    pytest.importorskip("starlette")
    from vitlab.serve.app import build_explorer

    explorer = build_explorer(shipped_path("vitlab/fmnist"), device="cpu")
    assert explorer.card["final"]["top1"] == FINAL["top1"] and explorer.examples
