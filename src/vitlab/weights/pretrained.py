"""vitlab's own directory format, shaped like Hugging Face's: ``config.json`` + ``model.safetensors``."""
from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors.torch import load_file, save_file

from ..models.resnet import ARCHITECTURE as RESNET, ResNet, ResNetConfig
from ..models.vit import ViTConfig, VisionTransformer

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_TAG = "vitlab"


def save_pretrained(model: VisionTransformer | ResNet, path: str | os.PathLike) -> Path:
    """Write the model's config and weights into directory ``path`` (created if needed). ResNet
    classifiers add ``"architecture": "resnet"``; ViT configs carry no such entry."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    arch = {"architecture": RESNET} if isinstance(model, ResNet) else {}
    config = {"format": FORMAT_TAG, **arch, **model.cfg.to_dict()}
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    _atomic_write(path / WEIGHTS_NAME, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
    _atomic_write(path / CONFIG_NAME, lambda tmp: tmp.write_text(json.dumps(config, indent=2) + "\n"))
    return path


def read_config(path: str | os.PathLike) -> ViTConfig | ResNetConfig:
    """The config stored in a vitlab directory's config.json (a ResNetConfig for ResNet classifiers)."""
    cfg_file = Path(path) / CONFIG_NAME
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{cfg_file} not found: a vitlab model directory needs {CONFIG_NAME} and {WEIGHTS_NAME}")
    d = json.loads(cfg_file.read_text())
    if d.pop("format", None) != FORMAT_TAG:
        raise ValueError(f"{cfg_file} is not a vitlab config (no \"format\": \"vitlab\"); use vitlab.load_weights or `vitlab convert`")
    arch = d.pop("architecture", None)
    if arch == RESNET:
        return ResNetConfig.from_dict(d)
    if arch is not None:
        raise ValueError(f"{cfg_file}: unknown architecture {arch!r}; this vitlab knows ViT (no entry) and {RESNET!r}")
    return ViTConfig.from_dict(d)


def from_pretrained(path: str | os.PathLike, **overrides) -> VisionTransformer | ResNet:
    """Rebuild a model saved by ``save_pretrained``. ``overrides`` change config fields that do not
    alter parameter shapes (e.g. ``drop_rate``, ``dynamic_img_size``)."""
    from dataclasses import replace

    cfg = replace(read_config(path), **overrides)
    model = ResNet(cfg) if isinstance(cfg, ResNetConfig) else VisionTransformer(cfg)
    weights = Path(path) / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found next to {CONFIG_NAME}")
    from . import check_and_load

    check_and_load(model, load_file(str(weights)), source=str(weights), strict=True)
    return model


def _atomic_write(dst: Path, write) -> None:
    """Write to a temporary file, fsync, then rename: a crash never leaves a half-written file."""
    tmp = dst.with_name(dst.name + ".tmp")
    write(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, dst)
