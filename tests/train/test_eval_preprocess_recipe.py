"""The recipe's data.eval_* keys become the model's test-time preprocessing: the run evaluates with it, its
model/ and checkpoints carry it (an unfinished run's too, from the recipe), and `vitlab eval` on the run
scores what the run reported."""
import json
import shutil
from pathlib import Path

import pytest

import vitlab
from vitlab.evaluate.metrics import evaluate_checkpoint
from vitlab.train import load_config, train
from vitlab.train.checkpoint import step_checkpoints
from vitlab.train.runlog import read_metrics
from vitlab.train.setup import build_model
from vitlab.utils.figures import rounded

from .conftest import TINY

EVAL = ["data.eval_resize=shorter", "data.eval_crop_pct=0.75", "data.eval_interpolation=bicubic"]
FIELDS = ("shorter", 0.75, "bicubic")


def _fields(cfg) -> tuple:
    return cfg.eval_resize, cfg.eval_crop_pct, cfg.eval_interpolation


def test_the_run_carries_its_preprocessing_and_eval_reproduces_its_score(tmp_path):
    run = tmp_path / "run"
    train(load_config(None, TINY + EVAL + ["schedule.steps=4"]), run, progress=False)
    assert _fields(vitlab.from_pretrained(run / "model").cfg) == FIELDS
    assert _fields(vitlab.load_model(run, checkpoint="last").cfg) == FIELDS
    final = json.loads((run / "final.json").read_text())
    last = [r for r in read_metrics(run) if "test_loss" in r][-1]  # the final evaluation, unrounded
    scored = evaluate_checkpoint(str(run), None)
    assert (scored["loss"], scored["top1"]) == (last["test_loss"], last["test_top1"])  # the same pixels, the same sums
    assert rounded([scored["loss"], scored["top1"]]) == [final["loss"], final["top1"]]
    # The check has teeth: the same weights with the default preprocessing score another loss.
    config = run / "model" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "eval_resize": "whole", "eval_crop_pct": 1.0}))
    assert evaluate_checkpoint(str(run), None)["loss"] != pytest.approx(final["loss"], abs=1e-6)
    # A run without model/ yet (killed before the end): its checkpoints' recipe says the same.
    shutil.rmtree(run / "model")
    assert _fields(vitlab.load_model(step_checkpoints(run)[-1]).cfg) == FIELDS


def test_recipe_keys_and_their_defaults():
    cfg = load_config(None, TINY)
    assert (cfg.data.eval_resize, cfg.data.eval_crop_pct, cfg.data.eval_interpolation) == (None, None, None)
    classes = [str(i) for i in range(10)]
    assert _fields(build_model(cfg, classes).cfg) == ("whole", 1.0, "bilinear")  # null keeps the model's
    # data.eval_crop_pct alone means what it meant before: the whole image resized to size / crop_pct, centre crop
    old = load_config(None, TINY + ["data.eval_crop_pct=0.875"])
    assert _fields(build_model(old, classes).cfg) == ("whole", 0.875, "bilinear")
    assert _fields(build_model(load_config(None, TINY + EVAL), classes).cfg) == FIELDS
    # a run directory written before these keys existed (its config.yaml has eval_crop_pct: null) still loads
    docs = Path(__file__).resolve().parents[2] / "docs" / "results" / "fmnist" / "config.yaml"
    assert "eval_crop_pct: null" in docs.read_text() and load_config(docs).data.eval_resize is None


@pytest.mark.parametrize("override, message", [
    ("data.eval_resize=squash", r"data.eval_resize='squash' is not one of \('whole', 'shorter'\)"),
    ("data.eval_crop_pct=1.5", r"data.eval_crop_pct=1.5 must be a number in \(0, 1\]"),
    ("data.eval_interpolation=lanczos", r"data.eval_interpolation='lanczos' is not one of"),
])
def test_bad_recipe_values_fail_before_any_work(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, TINY + [override])
