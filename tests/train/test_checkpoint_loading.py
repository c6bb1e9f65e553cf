"""`--checkpoint best|last|PATH`: a training checkpoint loads as the model it was, no architecture flags."""
import shutil

import pytest
import torch

import vitlab
from vitlab.cli import main
from vitlab.data import get_normalize, open_dataset
from vitlab.errors import CheckpointError
from vitlab.evaluate.metrics import evaluate, evaluate_checkpoint
from vitlab.models import ResNet, ResNetConfig
from vitlab.train import load_config, save_checkpoint, train
from vitlab.train.checkpoint import step_checkpoints


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished tiny run with EMA, relu, [-1, 1] normalisation and a checkpoint every 2 steps."""
    from .conftest import TINY

    out = tmp_path_factory.mktemp("ckrun") / "run"
    cfg = load_config(None, TINY + ["schedule.epochs=2", "data.dev_fraction=0.1", "train.ckpt_every_steps=2",
                                    "train.keep_last=100", "train.ema_decay=0.9", "model.act=relu"])
    train(cfg, out, progress=False)
    return out


def _weights_equal(model, state):
    return all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_best_keeps_classes_normalisation_and_activation(run):
    final = vitlab.from_pretrained(run / "model")
    best = vitlab.load_model(run, checkpoint="best")
    assert not best.training and not final.training
    assert best.cfg.class_names == final.cfg.class_names == tuple(str(i) for i in range(10))
    assert (best.cfg.mean, best.cfg.std) == get_normalize("minus1_1") == (final.cfg.mean, final.cfg.std)
    assert best.cfg.act == "relu" and best.cfg.img_size == (8, 8)
    st = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert _weights_equal(best, st["ema"]["module"])  # the weights its evaluation scored: the EMA average


def test_best_last_and_path_pick_those_files(run):
    first, last = step_checkpoints(run)[0], step_checkpoints(run)[-1]
    shutil.copy(first, run / "checkpoints" / "best.pt")  # make best an early step, unlike RUN/model
    early = torch.load(first, weights_only=True)["ema"]["module"]
    assert _weights_equal(vitlab.load_model(run, checkpoint="best"), early)
    assert _weights_equal(vitlab.load_model(run, checkpoint=first.name), early)  # a name inside RUN/checkpoints
    assert _weights_equal(vitlab.load_model(first), early)  # the file itself: its run is the folder above
    assert _weights_equal(vitlab.load_model(run, checkpoint="last"), torch.load(last, weights_only=True)["ema"]["module"])
    assert not _weights_equal(vitlab.from_pretrained(run / "model"), early)


def test_eval_checkpoint_best_equals_evaluating_the_best_steps_weights(run, capsys):
    ds = open_dataset("digits", "test")
    model = vitlab.from_pretrained(run / "model")
    model.load_state_dict(torch.load(run / "checkpoints" / "best.pt", weights_only=True)["ema"]["module"])
    from vitlab.data import EvalTransform

    tf = EvalTransform(model.cfg.img_size, model.cfg.mean, model.cfg.std, in_chans=1)
    expected = evaluate(model, ds.images, ds.labels, tf, 512, ds.classes).summary()
    assert evaluate_checkpoint(str(run), "digits", checkpoint="best", device="cpu") == {**expected, "data": "digits (test)"}
    assert main(["eval", str(run), "--data", "digits", "--checkpoint", "best", "--device", "cpu"]) == 0
    assert f"top-1: {expected['top1']:.2f}%" in capsys.readouterr().out


def test_resnet_training_checkpoint_loads_as_resnet(tmp_path):
    cfg = ResNetConfig(layers=(1, 1), width=0.5, in_chans=1, num_classes=3, img_size=(16, 16),
                       mean=(0.1,), std=(0.2,), class_names=("a", "b", "c"))
    model = ResNet(cfg).eval()
    with torch.no_grad():
        model.head.weight.normal_()
    model.save_pretrained(tmp_path / "model")
    save_checkpoint({"step": 3, "model": model.state_dict(), "ema": None, "config": {"model": {"name": "resnet26"}},
                     "img_size": [16, 16]}, tmp_path, keep_last=1, best=True)
    loaded = vitlab.load_model(tmp_path, checkpoint="best")
    assert isinstance(loaded, ResNet) and loaded.cfg == cfg and _weights_equal(loaded, model.state_dict())


def test_unfinished_run_uses_the_recipe(run, tmp_path):
    lonely = tmp_path / "copy.pt"  # away from its run (or the run has no model/ yet): the recipe says what it was
    shutil.copy(step_checkpoints(run)[0], lonely)
    model = vitlab.load_model(lonely)
    assert model.cfg.class_names is None  # only model/config.json stores them
    assert (model.cfg.mean, model.cfg.act, model.cfg.img_size, model.cfg.num_classes) == (get_normalize("minus1_1")[0], "relu", (8, 8), 10)
    assert _weights_equal(model, torch.load(lonely, weights_only=True)["ema"]["module"])


def test_convert_and_info_take_a_checkpoint(run, tmp_path, capsys):
    assert main(["convert", str(run), str(tmp_path / "best"), "--to", "vitlab", "--checkpoint", "best"]) == 0
    assert _weights_equal(vitlab.from_pretrained(tmp_path / "best"), vitlab.load_model(run, checkpoint="best").state_dict())
    assert main(["info", str(run), "--checkpoint", "last"]) == 0
    assert "vitlab-train" in capsys.readouterr().out


def test_clear_errors(tmp_path, run):
    with pytest.raises(CheckpointError, match="has no best.pt"):
        vitlab.load_model(tmp_path, checkpoint="best")
    with pytest.raises(FileNotFoundError, match="give best, last or a file"):
        vitlab.load_model(run, checkpoint="step_99999999.pt")
    assert main(["predict", str(tmp_path), "--checkpoint", "last", "x.png"]) == 2
