"""Recipes as typed configs: YAML + command-line overrides, with clear errors."""
from pathlib import Path

import pytest

from vitlab.train import load_config
from vitlab.train.config import parse_override

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["fmnist", "fmnist_long", "pretrain", "finetune"])
def test_shipped_recipes_load(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.optim.lr > 0


def test_recipes_follow_the_paper():
    pre, ft = load_config(CONFIGS / "pretrain.yaml"), load_config(CONFIGS / "finetune.yaml")
    assert (pre.optim.name, pre.optim.betas, pre.optim.clip_grad_norm, pre.optim.loss) == ("adamw", (0.9, 0.999), 1.0, "sigmoid")
    assert pre.data.batch_size == 4096 and pre.data.accum_steps == 16 and pre.model.options["drop_rate"] == 0.1
    assert (ft.optim.name, ft.optim.momentum, ft.optim.weight_decay, ft.schedule.decay) == ("sgd", 0.9, 0.0, "cosine")
    assert ft.model.reset_head and ft.model.options["img_size"] == [384, 384]


def test_overrides_are_typed():
    cfg = load_config(CONFIGS / "fmnist.yaml", ["optim.lr=3e-4", "data.batch_size=128", "model.depth=4",
                                                "data.randaugment=[2, 9]", "optim.clip_grad_norm=null",
                                                "model.img_size=32", "data.flip=false", "schedule.steps=7"])
    assert cfg.optim.lr == pytest.approx(3e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.data.batch_size == 128 and cfg.data.randaugment == (2, 9) and cfg.data.flip is False
    assert cfg.optim.clip_grad_norm is None and cfg.schedule.steps == 7
    assert cfg.model.options["depth"] == 4 and cfg.model.options["img_size"] == [32, 32]
    # the resolved YAML round-trips
    again = load_config(None, [f"{s}.{k}={v}" for s, body in cfg.to_dict().items() for k, v in body.items()
                               if not isinstance(v, (list, type(None)))])
    assert again.optim.lr == cfg.optim.lr and again.model.options["depth"] == 4


def test_override_value_parsing():
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    assert parse_override("a.b=null") == ("a.b", None)
    with pytest.raises(ValueError, match="section.field=value"):
        parse_override("optim.lr")


@pytest.mark.parametrize("override, match", [
    ("optim.lr=abc", "optim.lr: expected a number"),
    ("data.batch_size=1.5", "data.batch_size: expected an integer"),
    ("data.flip=3", "data.flip: expected true or false"),
    ("data.crop_scale=[0.1]", "expected 2 values"),
    ("optim.name=lamb", "optim.name='lamb' is not one of"),
    ("data.accum_steps=3", "multiple of data.accum_steps"),
])
def test_bad_values_name_the_field(override, match):
    with pytest.raises(ValueError, match=match):
        load_config(CONFIGS / "fmnist.yaml", [override])


def test_unknown_keys_list_valid_ones():
    with pytest.raises(KeyError, match="optim.lr") as e:
        load_config(None, ["optim.lrr=1"])
    assert "Did you mean optim.lr" in str(e.value) and "schedule.warmup_steps" in str(e.value)
    with pytest.raises(KeyError, match="model.embed_dim"):
        load_config(None, ["model.width=3"])
    with pytest.raises(KeyError, match="valid sections"):
        from vitlab.train.config import config_from_dict

        config_from_dict({"optimizer": {}})


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="configs/fmnist.yaml"):
        load_config(tmp_path / "nope.yaml")
