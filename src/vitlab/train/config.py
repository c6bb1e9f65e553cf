"""Typed training configuration: dataclass sections <- YAML recipe <- ``section.field=value`` overrides.

A recipe is one YAML file with the sections below; every field can be overridden from the command
line (``vitlab train --config X.yaml optim.lr=3e-4 data.batch_size=128``). Values are parsed as YAML
and checked against the field's type, so ``optim.lr=abc`` or ``optim.nesterov=3`` fail with a message
naming the field; an unknown key fails naming the closest valid ones (``optim.lrr``: did you mean
``optim.lr``?), or its section's keys when none is close. The ``model`` section takes the
registry name plus any field of that model's config class: ``ViTConfig`` for ViTs and hybrids
(``model.depth=4``, ``model.drop_path_rate=0.1``), ``ResNetConfig`` for the BiT ResNets
(``model.width=0.5``, ``model.layers=[2,2,2,2]``).

The classes are named after the recipe section they hold (``data:`` -> ``DataSection``, ..., ``train:``
-> ``TrainSection``); ``...Config`` names belong to the model architectures and to ``Config``, the whole recipe.
"""
from __future__ import annotations

import difflib
import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from ..data.recipe import DataSection
from ..errors import ConfigError
from ..utils.checks import check_choice
from ..models import ResNetConfig, ViTConfig, get_config, list_models


@dataclass
class ModelSection:
    """``name`` from the registry (or None to take the architecture from ``weights``), ``weights`` to
    start from (any format vitlab reads), and fields of the model's config class (ViTConfig or
    ResNetConfig) in ``options`` (flat in the YAML)."""

    name: str | None = "vit_mnist"  # a registered model (docs/reference/models.md); null: the architecture of weights
    weights: str | None = None  # checkpoint to start from, any format vitlab reads (fine-tuning)
    reset_head: bool = False  # fine-tuning: new zero-initialised head, pre-logits dropped (paper, sec. 3.2)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimSection:
    name: str = "adamw"  # adamw (decoupled weight decay), adam, sgd
    lr: float = 1e-3  # peak learning rate (after warmup)
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.9  # sgd
    nesterov: bool = False  # sgd
    clip_grad_norm: float | None = 1.0  # global-norm clipping; None: off
    layer_decay: float | None = None  # layer-wise lr decay: block i gets lr * decay^(depth - i)
    loss: str = "softmax"  # softmax or sigmoid cross-entropy (the paper pretrains with sigmoid)


@dataclass
class Stage:
    """From ``epoch`` on, train at ``img_size`` (None: the model's) and, when ``lr`` is set, start a new
    learning-rate cycle (warmup over ``warmup_epochs``, then the schedule's decay to the next cycle).

    Progressive resizing in one run: ``[{epoch: 0, img_size: 16}, {epoch: 10, lr: 1e-3}]`` trains
    at 16x16 (4x4 patches: 3x cheaper steps than 28x28) and fine-tunes at the model's 28x28 from
    epoch 10 with position embeddings resampled as the paper does at a higher resolution.
    """

    epoch: float = 0.0
    img_size: int | None = None
    lr: float | None = None
    warmup_epochs: float = 0.0


@dataclass
class ScheduleSection:
    epochs: int | None = 10  # training length; setting epochs or steps (non-null) clears the other
    steps: int | None = None  # total optimizer steps; wins over epochs when a recipe file sets both
    warmup_steps: int | None = None  # overrides warmup_epochs when set
    warmup_epochs: float = 0.0
    decay: str = "cosine"  # cosine, linear, constant
    min_lr_ratio: float = 0.0  # final lr as a fraction of the peak
    stages: list[Stage] | None = None  # progressive resizing / lr restarts, in order of epoch (see Stage)


@dataclass
class TrainSection:
    seed: int = 0
    objective: str = "classify"  # classify (labels) or masked_patch (self-supervised, paper appendix B.1.2)
    device: str = "auto"  # auto (cuda when available), cpu, cuda, cuda:1
    precision: str = "auto"  # auto (CUDA: bf16; CPU: bf16 where native and faster, see train/precision.py), fp32, bf16
    compile: bool | str = False  # torch.compile the training step: true, false, or auto (CUDA, or a CPU with a C++ compiler on PATH); the first step compiles (timed in the log)
    threads: int | None = None  # torch CPU threads per process; None: cores / local processes
    ema_decay: float = 0.0  # Polyak/EMA averaging of the weights (e.g. 0.9999); 0: off. Eval and model/ use it
    eval_every_epochs: int = 1
    ckpt_every_steps: int = 500  # periodic checkpoint; 0: only end of epoch
    keep_last: int = 2  # periodic/epoch checkpoints kept (best.pt is kept separately)
    log_every_steps: int = 20  # training records (metrics.jsonl, TensorBoard; a printed line under --no-progress)
    grad_checkpointing: bool = False
    strategy: str = "auto"  # under torchrun: ddp (whole model per process), fsdp (sharded; any process count), auto (train/strategy.py)


@dataclass
class Config:
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    optim: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    train: TrainSection = field(default_factory=TrainSection)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-able dict; the model's options are flattened into its section."""
        d = {f.name: _plain(asdict(getattr(self, f.name))) for f in fields(self)}
        options = d["model"].pop("options")
        d["model"].update(options)
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def validate(self) -> None:
        """Cross-field checks, so a bad recipe fails before the data is loaded."""
        o, s, d, r = self.optim, self.schedule, self.data, self.train
        check_choice("optim.name", o.name, ("adamw", "adam", "sgd"))
        check_choice("optim.loss", o.loss, ("softmax", "sigmoid"))
        check_choice("schedule.decay", s.decay, ("cosine", "linear", "constant"))
        check_choice("train.precision", r.precision, ("auto", "fp32", "bf16"))
        check_choice("train.objective", r.objective, ("classify", "masked_patch"))
        check_choice("train.strategy", r.strategy, ("auto", "ddp", "fsdp"))
        if r.compile not in (True, False, "auto"):
            raise ValueError(f"train.compile={r.compile!r} is not one of true, false, auto")
        d.validate()
        if r.objective == "masked_patch" and (d.mixup_alpha or d.cutmix_alpha or d.label_smoothing or o.layer_decay):
            raise ValueError("train.objective=masked_patch predicts patch colours, not labels: set data.mixup_alpha, "
                             "data.cutmix_alpha and data.label_smoothing to 0 and optim.layer_decay to null")
        if o.lr <= 0 or (o.clip_grad_norm is not None and o.clip_grad_norm <= 0):
            raise ValueError("optim.lr and optim.clip_grad_norm must be > 0 (clip_grad_norm: null turns clipping off)")
        if o.layer_decay is not None and not 0 < o.layer_decay <= 1:
            raise ValueError(f"optim.layer_decay={o.layer_decay} must be in (0, 1]")
        if not s.steps and (s.epochs is None or s.epochs < 1):
            raise ValueError(f"schedule.epochs={s.epochs}, schedule.steps={s.steps}: set schedule.epochs >= 1 or "
                             "schedule.steps >= 1")
        for i, stage in enumerate(s.stages or ()):
            prev = s.stages[i - 1].epoch if i else -1.0
            if stage.epoch < 0 or stage.epoch <= prev:
                raise ValueError(f"schedule.stages[{i}].epoch={stage.epoch}: stages need increasing start epochs >= 0")
            if (stage.img_size is not None and stage.img_size < 1) or (stage.lr is not None and stage.lr <= 0) or stage.warmup_epochs < 0:
                raise ValueError(f"schedule.stages[{i}]: img_size and lr must be > 0 and warmup_epochs >= 0, got {stage}")
        if not 0 <= r.ema_decay < 1:
            raise ValueError(f"train.ema_decay={r.ema_decay} must be in [0, 1)")
        if r.keep_last < 1 or r.ckpt_every_steps < 0 or r.log_every_steps < 1 or r.eval_every_epochs < 1:
            raise ValueError("train.keep_last, log_every_steps, eval_every_epochs must be >= 1, ckpt_every_steps >= 0")
        if self.model.name is None and self.model.weights is None:
            raise ValueError("set model.name (a registered model) or model.weights (a checkpoint to start from)")
        check_model_options(self.model)


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


# ------------------------------------------------------------------------------------ typed values
_NoneType = type(None)


def coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` (parsed YAML) as type ``hint``; a clear ValueError naming ``key`` when it does not fit."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and _NoneType in args:
            return None
        errors = []
        for a in args:
            if a is _NoneType:
                continue
            try:
                return coerce(value, a, key)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(errors[0] if len(errors) == 1 else f"{key}: {value!r} fits none of {hint}")
    if hint is Any:
        return value
    if is_dataclass(hint):
        if not isinstance(value, dict):
            raise ValueError(f"{key}: expected a mapping of {', '.join(f.name for f in fields(hint))}, got {value!r}")
        known = typing.get_type_hints(hint)
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"{key}: unknown field(s) {', '.join(map(str, unknown))}; valid: {', '.join(known)}")
        return hint(**{k: coerce(v, known[k], f"{key}.{k}") for k, v in value.items()})
    if origin in (tuple, list):
        if isinstance(value, int) and not isinstance(value, bool) and args == (int, int):
            value = [value, value]  # img_size=32 -> (32, 32)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key}: expected a list like [a, b], got {value!r}")
        if args and (args[-1] is Ellipsis or origin is list):
            items = [coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
        elif args:
            if len(value) != len(args):
                raise ValueError(f"{key}: expected {len(args)} values, got {len(value)} ({value!r})")
            items = [coerce(v, a, key) for v, a in zip(value, args)]
        else:
            items = list(value)
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ValueError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool):
            raise ValueError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)  # also "1e-3", which YAML 1.1 reads as a string
        except (TypeError, ValueError):
            raise ValueError(f"{key}: expected a number, got {value!r}") from None
    if hint is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ValueError(f"{key}: expected a string, got {value!r}")
        return str(value)
    raise TypeError(f"{key}: unsupported field type {hint}")


_SECTIONS = {f.name: f for f in fields(Config)}
_MODEL_OWN = ("name", "weights", "reset_head")
_MODEL_CLASSES = (ViTConfig, ResNetConfig)  # model.* keys: fields of one of these (which one: model.name's)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def model_config_class(name: str | None) -> type | None:
    """The config class of registered model ``name`` (None without a name: the checkpoint decides)."""
    return None if name is None else type(get_config(name))


def _model_keys(cls: type | None) -> list[str]:
    classes = _MODEL_CLASSES if cls is None else (cls,)
    return list(_MODEL_OWN) + list(dict.fromkeys(f.name for c in classes for f in fields(c)))


def _valid_keys() -> list[str]:
    keys = []
    for sec, f in _SECTIONS.items():
        cls = f.default_factory  # type: ignore[misc]
        names = _model_keys(None) if sec == "model" else [v.name for v in fields(cls)]
        keys += [f"{sec}.{n}" for n in names]
    return keys


class ConfigKeyError(ConfigError, KeyError):
    """An unknown config key; printed as plain text (KeyError would quote and escape the message)."""

    def __str__(self) -> str:
        return str(self.args[0])


def _unknown(key: str) -> KeyError:
    return ConfigKeyError(f"unknown config key {key!r}.{_suggest(key, _valid_keys())}")


def _unknown_model_key(key: str, name: str | None) -> KeyError:
    """A model.* key that the named model's config class does not have; names the class."""
    cls = model_config_class(name)
    what = f"a field of {cls.__name__}, the config class of model.name={name}" if cls else \
        f"a field of {' or '.join(c.__name__ for c in _MODEL_CLASSES)}"
    return ConfigKeyError(f"unknown config key {key!r}: not {what}."
                          + _suggest(key, [f"model.{k}" for k in _model_keys(cls)]))


def _suggest(key: str, valid: list[str]) -> str:
    """The keys close to ``key`` (else its section's, on one line), and where to find them all."""
    sec, _, name = key.partition(".")
    same = {k.partition(".")[2]: k for k in valid if k.startswith(sec + ".")}
    close = [same[n] for n in difflib.get_close_matches(name, same, n=3)] if same else \
        difflib.get_close_matches(key, valid, n=3)
    near = f" Did you mean {', '.join(close)}?" if close else \
        f" The {sec} keys: {', '.join(same)}." if same else f" The sections: {', '.join(_SECTIONS)}."
    return near + " Every key with its value: vitlab train --print-config; what each means: the recipe reference " \
                  "(docs/reference/recipe.md)."


def check_model_options(m: ModelSection) -> None:
    """Every model.* option is a field of the named model's config class, typed as that class says."""
    cls = model_config_class(m.name)
    if cls is None:
        return  # model.weights only: the checkpoint's class checks them when the model is built
    hints = _hints(cls)
    for k, v in m.options.items():
        if k not in hints:
            raise _unknown_model_key(f"model.{k}", m.name)
        m.options[k] = _plain(coerce(v, hints[k], f"model.{k}"))


def set_value(cfg: Config, key: str, value: Any) -> None:
    """Set ``section.field`` on ``cfg`` with type checking (``value``: parsed YAML). A model option is
    checked against the model classes here and against model.name's class in ``Config.validate``
    (model.name may come later). Setting schedule.epochs or schedule.steps clears the other."""
    sec, _, name = key.partition(".")
    if sec not in _SECTIONS or not name:
        raise _unknown(key)
    obj = getattr(cfg, sec)
    if sec == "model" and name not in _MODEL_OWN:
        hint = next((_hints(c)[name] for c in _MODEL_CLASSES if name in _hints(c)), None)
        if hint is None:
            raise _unknown_model_key(key, cfg.model.name if cfg.model.name in list_models() else None)
        obj.options[name] = _plain(coerce(value, hint, key))
        return
    hints = _hints(type(obj))
    if name not in hints or name == "options":
        raise _unknown(key)
    setattr(obj, name, coerce(value, hints[name], key))
    if sec == "schedule" and name in ("epochs", "steps") and value is not None:
        setattr(obj, "steps" if name == "epochs" else "epochs", None)


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=3e-4"`` -> ("optim.lr", 0.0003): the value is read as YAML (null, true, [1, 2], ...)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override {text!r} is not of the form section.field=value (e.g. optim.lr=3e-4)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ValueError(f"override {text!r}: cannot parse the value ({e})") from None
    return key.strip(), value


def config_from_dict(d: dict[str, Any]) -> Config:
    cfg = Config()
    if not isinstance(d, dict):
        raise ValueError(f"a config must be a mapping of sections ({', '.join(_SECTIONS)}), got {type(d).__name__}")
    for sec, body in d.items():
        if sec not in _SECTIONS:
            raise ConfigKeyError(f"unknown config section {sec!r}; valid sections: {', '.join(_SECTIONS)}")
        if body is None:
            continue
        if not isinstance(body, dict):
            raise ValueError(f"config section {sec!r} must be a mapping, got {body!r}")
        # schedule.steps wins over epochs in a file that sets both (whatever their order): set it last
        for name, value in sorted(body.items(), key=lambda kv: sec == "schedule" and kv[0] == "steps"):
            set_value(cfg, f"{sec}.{name}", value)
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """A recipe file (or the defaults) with ``section.field=value`` overrides applied, validated."""
    d: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file {p} not found (recipes live in configs/, e.g. configs/fmnist.yaml)")
        try:
            d = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{p} is not valid YAML: {e}") from None
    cfg = config_from_dict(d)
    for text in overrides:
        set_value(cfg, *parse_override(text))
    cfg.validate()
    return cfg


def model_options(cfg: Config) -> dict[str, Any]:
    """The model section's options as keyword arguments of its config class (lists as tuples)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.model.options.items()}
