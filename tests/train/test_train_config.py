"""Recipes as typed configs: YAML + command-line overrides, with clear errors."""
import re
import time
from pathlib import Path

import pytest
import torch

from vitlab.train import load_config
from vitlab.train.config import parse_override
from vitlab.train.runlog import read_metrics

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name, optim, lr, batch", [("fmnist", "adamw", 2e-3, 256), ("fmnist_long", "adamw", 2e-3, 256),
                                                   ("pretrain", "adamw", 3e-3, 4096), ("finetune", "sgd", 0.01, 512)])
def test_shipped_recipes_load(name, optim, lr, batch):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert (cfg.optim.name, cfg.optim.lr, cfg.data.batch_size) == (optim, pytest.approx(lr), batch)


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
    ("train.compile=sometimes", "train.compile='sometimes' is not one of true, false, auto"),
])
def test_bad_values_name_the_field(override, match):
    with pytest.raises(ValueError, match=match):
        load_config(CONFIGS / "fmnist.yaml", [override])


def test_unknown_keys_name_the_close_ones_in_one_line():
    """Not every key (94 lines): the close ones, else the section's; where all of them are told."""
    with pytest.raises(KeyError) as e:
        load_config(None, ["optim.lrr=1"])
    msg = str(e.value)
    assert "Did you mean optim.lr?" in msg and "--print-config" in msg and "recipe.md" in msg
    assert "\n" not in msg and "schedule.warmup_steps" not in msg
    with pytest.raises(KeyError, match=r"The optim keys: name, lr, .*, loss\. Every key"):
        load_config(None, ["optim.zzz=1"])
    with pytest.raises(KeyError, match=r"'optimizer.lr'\. Did you mean optim.lr"):
        load_config(None, ["optimizer.lr=1"])
    with pytest.raises(KeyError, match=r"not a field of ViTConfig, .*Did you mean model.embed_dim\?"):
        load_config(None, ["model.name=vit_mnist", "model.embed_dimm=3"])
    with pytest.raises(KeyError, match="valid sections"):
        from vitlab.train.config import config_from_dict

        config_from_dict({"optimizer": {}})


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="configs/fmnist.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_resnet_recipe_keys_are_checked_against_resnet_config(tiny, tmp_path):
    from vitlab.train import build_model, train

    keys = ["model.name=resnet26", "model.width=0.5", "model.layers=[1, 1]", "model.img_size=8", "model.in_chans=1"]
    cfg = load_config(None, tiny[:4] + keys)
    model = build_model(cfg, [str(i) for i in range(10)])
    assert model.cfg.width == 0.5 and model.cfg.layers == (1, 1) and model.cfg.num_classes == 10
    assert model.stem.conv.out_channels == 32  # int(64 x width): the width reached the network
    result = train(load_config(None, tiny[:4] + keys + ["schedule.steps=1", "train.threads=1"]), tmp_path, progress=False)
    assert result.final["objective"] == "classify" and (tmp_path / "model" / "model.safetensors").is_file()
    with pytest.raises(KeyError, match="not a field of ResNetConfig, the config class of model.name=resnet26") as e:
        load_config(None, keys + ["model.depth=4"])
    assert "Did you mean model.width?" in str(e.value) and "model.embed_dim" not in str(e.value)
    # the order does not matter: a ViT key before model.name of a ResNet is still refused
    with pytest.raises(KeyError, match="ResNetConfig"):
        load_config(None, ["model.patch_size=2", "model.name=resnet50"])
    with pytest.raises(ValueError, match="model.layers: expected a list"):
        load_config(None, ["model.name=resnet26", "model.layers=3"])


def test_setting_steps_or_epochs_replaces_the_other():
    cfg = load_config(CONFIGS / "fmnist.yaml", ["schedule.steps=5"])  # the recipe sets epochs: 18
    assert (cfg.schedule.steps, cfg.schedule.epochs) == (5, None)
    cfg = load_config(CONFIGS / "fmnist.yaml", ["schedule.steps=5", "schedule.epochs=2"])
    assert (cfg.schedule.steps, cfg.schedule.epochs) == (None, 2)
    from vitlab.train.config import config_from_dict

    both = config_from_dict({"schedule": {"steps": 7, "epochs": 3}})  # a file with both: steps wins
    assert (both.schedule.steps, both.schedule.epochs) == (7, None)
    with pytest.raises(ValueError, match="set schedule.epochs >= 1 or schedule.steps"):
        load_config(CONFIGS / "fmnist.yaml", ["schedule.epochs=null"])


def test_compile_auto_needs_cuda_or_a_cpu_compiler(monkeypatch):
    import torch

    from vitlab.train.strategy import use_compile

    assert load_config(None, ["model.name=vit_mnist", "train.compile=auto"]).train.compile == "auto"
    assert load_config(None, ["model.name=vit_mnist", "train.compile=true"]).train.compile is True
    assert use_compile(True, torch.device("cpu")) == (True, "") and use_compile(False, torch.device("cuda")) == (False, "")
    assert use_compile("auto", torch.device("cuda"))[0]
    monkeypatch.setenv("CXX", "")
    monkeypatch.setattr("shutil.which", lambda name: None)  # a bare machine: no C++ compiler anywhere
    on, why = use_compile("auto", torch.device("cpu"))
    assert not on and "no C++ compiler" in why
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}" if name == "clang++" else None)
    assert use_compile("auto", torch.device("cpu")) == (True, "auto: C++ compiler clang++")


class _FailsToCompile(torch.nn.Module):
    """What torch.compile returns where the C++ toolchain is broken: the first call raises."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, *args, **kwargs):
        raise torch._dynamo.exc.BackendCompilerFailed(lambda *a: None, RuntimeError("g++: fatal error: no input files"), None)


class _Compiled(torch.nn.Module):
    """What torch.compile returns, with the compiling done by its first call (a pause)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, *args, **kwargs):
        self.calls += 1
        if self.calls == 1:
            time.sleep(0.3)
        return self.net(*args, **kwargs)


def test_compiling_is_announced_and_timed(tmp_path, monkeypatch, capsys, tiny):
    from vitlab.train import train
    from vitlab.train import strategy as S

    monkeypatch.setattr(S, "use_compile", lambda s, d: (True, "auto: test"))
    monkeypatch.setattr(S.torch, "compile", _Compiled)
    train(load_config(None, tiny + ["schedule.steps=3", "train.compile=auto"]), tmp_path / "run", progress=False)
    lines = capsys.readouterr().out.splitlines()
    said = [i for i, line in enumerate(lines) if line.startswith("step ") and "compil" in line]
    assert [lines[i] for i in said[:1]] == ["step 0: compiling the model (torch.compile)..."]
    assert len(said) == 2 and re.fullmatch(r"step 1: compiled in (\d+\.\d) s", lines[said[1]])
    assert float(lines[said[1]].split()[-2]) >= 0.3
    first = next(i for i, line in enumerate(lines) if line.startswith("step 1/3"))
    assert said[1] < first and "img/s" not in lines[first]  # the compiling step's speed is no speed
    assert "img/s" in lines[first + 1] and lines[first + 1].startswith("step 2/3")
    speeds = [r.get("img_per_s") for r in read_metrics(tmp_path / "run") if "train_loss" in r]
    assert speeds[0] is None and all(speeds[1:]) and len(speeds) == 3


@pytest.mark.parametrize("setting", ["auto", "true"])
def test_compile_auto_falls_back_to_eager_when_compiling_fails(tmp_path, monkeypatch, capsys, tiny, setting):
    from vitlab.train import train
    from vitlab.train import strategy as S

    monkeypatch.setattr(S, "use_compile", lambda s, d: (s is True or s == "auto", "auto: test" if s == "auto" else ""))
    monkeypatch.setattr(S.torch, "compile", _FailsToCompile)
    cfg = load_config(None, tiny + ["schedule.steps=3", f"train.compile={setting}"])
    if setting == "true":  # asked for explicitly: the error stands
        with pytest.raises(torch._dynamo.exc.BackendCompilerFailed):
            train(cfg, tmp_path / "run", progress=False)
        return
    result = train(cfg, tmp_path / "run", progress=False)
    assert result.step == 3
    out = capsys.readouterr().out
    assert "torch.compile (auto: test)" in out  # the first line said it would compile
    assert "step 0: torch.compile failed (" in out and "training eagerly" in out
