"""vitlab model -> files other tools read: timm state dicts, Hugging Face directories, official .npz.

Every writer goes through a temporary file and a rename, so an interrupted export never leaves a
half-written file where a good one was.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import save_file

from ..errors import ConfigError
from ..models.pretrained import save_pretrained
from ..models.vit import VisionTransformer
from ..utils.io import atomic_write
from .formats import CONFIG_METADATA_KEY
from .hf import preprocessor_config, vitlab_to_hf
from .load import load_model
from .official import vitlab_to_official
from .timm import vitlab_to_timm

TARGETS = ("vitlab", "timm", "hf", "npz", "vitlab-state-dict")


def save_state_dict(model: VisionTransformer, path: str | os.PathLike) -> Path:
    """A single .safetensors with vitlab keys whose metadata carries the config (``load_model`` rebuilds it)."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": "pt", CONFIG_METADATA_KEY: json.dumps(model.cfg.to_dict())}
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=meta))
    return path


def save_timm(model: VisionTransformer, path: str | os.PathLike) -> Path:
    """A timm-style .safetensors state dict (timm's ``load_checkpoint`` / ``pretrained_cfg`` file)."""
    path = Path(path)
    state = vitlab_to_timm(model)
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
    return path


def save_hf(model: VisionTransformer, path: str | os.PathLike) -> Path:
    """A Hugging Face directory: config.json + model.safetensors (+ preprocessor_config.json), loadable by
    ``transformers.ViTForImageClassification`` (model with a head) or ``ViTModel`` (num_classes=0)."""
    path = Path(path)
    config, state = vitlab_to_hf(model)
    path.mkdir(parents=True, exist_ok=True)
    atomic_write(path / "model.safetensors", lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
    for name, d in (("config.json", config), ("preprocessor_config.json", preprocessor_config(model))):
        atomic_write(path / name, lambda tmp, d=d: tmp.write_text(json.dumps(d, indent=2) + "\n"))
    return path


def save_npz(model: VisionTransformer, path: str | os.PathLike, names: str = "linen") -> Path:
    """An .npz in Google's official layout (HWIO / (D, heads, head_dim) kernels; linen or pre-linen names)."""
    path = Path(path)
    official = {"pos_embed": "learn", "act": "gelu_tanh"}  # what the official ViT computes (flax's nn.gelu: tanh)
    other = [f"{k}={getattr(model.cfg, k)!r} (only {v!r})" for k, v in official.items() if getattr(model.cfg, k) != v]
    if other:
        raise ValueError(f"the official code has no {' and no '.join(other)}; export to vitlab or timm instead")
    arrays = vitlab_to_official(model.state_dict(), model.cfg.num_heads, names)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append '.npz' to a path
            np.savez(f, **arrays)

    atomic_write(path, write)
    return path


def export(model: VisionTransformer, dst: str | os.PathLike, to: str, **kw: Any) -> Path:
    """Write ``model`` to ``dst`` in layout ``to`` (one of TARGETS)."""
    writers = {"vitlab": save_pretrained, "timm": save_timm, "hf": save_hf, "npz": save_npz,
               "vitlab-state-dict": save_state_dict}
    if to not in writers:
        raise ConfigError(f"unknown export format {to!r}; choose one of {TARGETS}")
    model.eval()
    return Path(writers[to](model, dst, **kw))


def convert(src: str | os.PathLike, dst: str | os.PathLike, to: str, checkpoint: str | os.PathLike | None = None,
            **overrides: Any) -> Path:
    """Read any supported checkpoint and write it in layout ``to``; ``checkpoint`` and ``overrides`` as
    for ``load_model``."""
    if Path(dst).resolve() == Path(src).resolve():
        raise ConfigError(f"destination {dst} is the source; choose another path so the source is kept")
    return export(load_model(src, checkpoint, **overrides), dst, to)
