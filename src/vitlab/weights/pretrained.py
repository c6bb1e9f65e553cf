"""vitlab's own directory format, shaped like Hugging Face's: ``config.json`` + ``model.safetensors``."""
from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors.torch import load_file, save_file

from ..models.vit import ViTConfig, VisionTransformer

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_TAG = "vitlab"


def save_pretrained(model: VisionTransformer, path: str | os.PathLike) -> Path:
    """Write the model's config and weights into directory ``path`` (created if needed)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = {"format": FORMAT_TAG, **model.cfg.to_dict()}
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    _atomic_write(path / WEIGHTS_NAME, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
    _atomic_write(path / CONFIG_NAME, lambda tmp: tmp.write_text(json.dumps(config, indent=2) + "\n"))
    return path


def read_config(path: str | os.PathLike) -> ViTConfig:
    """The ViTConfig stored in a vitlab directory's config.json."""
    cfg_file = Path(path) / CONFIG_NAME
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{cfg_file} not found: a vitlab model directory needs {CONFIG_NAME} and {WEIGHTS_NAME}")
    d = json.loads(cfg_file.read_text())
    if d.pop("format", None) != FORMAT_TAG:
        raise ValueError(f"{cfg_file} is not a vitlab config (no \"format\": \"vitlab\"); use vitlab.load_weights or `vitlab convert`")
    return ViTConfig.from_dict(d)


def from_pretrained(path: str | os.PathLike, **overrides) -> VisionTransformer:
    """Rebuild a model saved by ``save_pretrained``. ``overrides`` change config fields that do not
    alter parameter shapes (e.g. ``drop_rate``, ``dynamic_img_size``)."""
    from dataclasses import replace

    cfg = replace(read_config(path), **overrides)
    model = VisionTransformer(cfg)
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
