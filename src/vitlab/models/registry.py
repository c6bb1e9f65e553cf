"""Named variants (paper Table 1, plus the Ti/S and g/G sizes of the follow-up work) -> configs -> models.

A name is ``vit_{size}{patch}``: ``vit_b16`` is ViT-Base with 16x16 patches. Every variant works at any
image size (``img_size=``); parameter counts at 224px with 1000 classes match the published table.
``model_from_config`` builds the class a config describes; ``from_pretrained`` rebuilds a saved directory.
Loading weights of other formats is ``vitlab.weights``' job (``vitlab.create_model(..., weights=)``).
"""
from __future__ import annotations

import difflib
import json
import os
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Callable

from safetensors.torch import load_file
from torch import nn

from ..errors import CheckpointError, ConfigError, UnknownOptionError
from .pretrained import CONFIG_NAME, FORMAT_TAG, WEIGHTS_NAME, check_and_load
from .resnet import ResNet, ResNetConfig
from .vit import ViTConfig, VisionTransformer

ModelConfig = ViTConfig | ResNetConfig

# (depth, embed_dim, mlp_dim, heads)
SIZES = {
    "ti": (12, 192, 768, 3),
    "s": (12, 384, 1536, 6),
    "b": (12, 768, 3072, 12),
    "l": (24, 1024, 4096, 16),
    "h": (32, 1280, 5120, 16),
    # "Scaling Vision Transformers" (Zhai et al. 2022), Table 2: 1011M and 1843M parameters. Those figures
    # are the encoder without the 1000-class head (1011.2M, 1842.8M here; with it 1012.6M, 1844.4M).
    "g": (40, 1408, 6144, 16),
    "G": (48, 1664, 8192, 16),
}

_REGISTRY: dict[str, Callable[[], ModelConfig]] = {}


def register(name: str, cfg: ModelConfig | Callable[[], ModelConfig]) -> None:
    """Add a named variant; ``cfg`` is a config (copied on use) or a function returning one."""
    if name in _REGISTRY:
        raise ConfigError(f"model name {name!r} is already registered")
    _REGISTRY[name] = cfg if callable(cfg) else (lambda: replace(cfg))


def vit_config(size: str, patch: int, **kw: Any) -> ViTConfig:
    depth, dim, mlp, heads = SIZES[size]
    return ViTConfig(patch_size=patch, depth=depth, embed_dim=dim, mlp_dim=mlp, num_heads=heads, **kw)


for _size, _patch in [("ti", 16), ("s", 16), ("s", 32), ("b", 8), ("b", 16), ("b", 32), ("l", 16), ("l", 32), ("h", 14),
                     ("g", 14), ("G", 14)]:
    register(f"vit_{_size}{_patch}", vit_config(_size, _patch))

# The main job's default: a small ViT for 28x28 grey images (Fashion-MNIST / MNIST), patch 4.
register(
    "vit_mnist",
    ViTConfig(img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=192, depth=6, num_heads=3, mlp_dim=384),
)

# Hybrids (paper section 3.1, Table 6): BiT ResNet stages, then 1x1 patches of the feature map. The
# root-only R+ViT-Ti/16 cuts the stride-4 root features into 8x8 patches (timm: vit_tiny_r_s16_p8_224).
for _name, _size, _patch, _layers in [
    ("r50_vit_b16", "b", 1, (3, 4, 9)),
    ("r26_vit_s32", "s", 1, (2, 2, 2, 2)),
    ("r26_vit_b32", "b", 1, (2, 2, 2, 2)),
    ("r50_vit_l32", "l", 1, (3, 4, 6, 3)),
    ("r_vit_ti16", "ti", 8, ()),
]:
    register(_name, vit_config(_size, _patch, backbone_layers=_layers))

# The paper's baseline: BiT ResNets (GroupNorm + weight standardisation), e.g. for ViT-vs-ResNet runs.
register("resnet26", ResNetConfig(layers=(2, 2, 2, 2)))
register("resnet50", ResNetConfig(layers=(3, 4, 6, 3)))


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern, sorted."""
    import fnmatch

    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """The named variant's config with overrides applied (any field of its config class)."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown model {name!r}{hint} (see `vitlab models` or vitlab.list_models())")
    base = _REGISTRY[name]()
    known = {f.name for f in fields(base)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UnknownOptionError(f"unknown model option(s) {unknown} for {name!r}; valid options: {sorted(known)}")
    return replace(base, **overrides)


def model_from_config(cfg: ModelConfig) -> nn.Module:
    """The model class a config describes: VisionTransformer (incl. hybrids) or the ResNet baseline."""
    return ResNet(cfg) if isinstance(cfg, ResNetConfig) else VisionTransformer(cfg)


def read_config(path: str | os.PathLike) -> ModelConfig:
    """The config stored in a vitlab directory's config.json (a ResNetConfig for ResNet classifiers)."""
    cfg_file = Path(path) / CONFIG_NAME
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{cfg_file} not found: a vitlab model directory needs {CONFIG_NAME} and {WEIGHTS_NAME}")
    d = json.loads(cfg_file.read_text())
    if d.pop("format", None) != FORMAT_TAG:
        raise CheckpointError(f"{cfg_file} is not a vitlab config (no \"format\": \"vitlab\"); use vitlab.load_model "
                              "or `vitlab convert`")
    arch = d.pop("architecture", None)
    if arch == ResNetConfig.architecture:
        return ResNetConfig.from_dict(d)
    if arch is not None:
        raise CheckpointError(f"{cfg_file}: unknown architecture {arch!r}; this vitlab knows ViT (no entry) and "
                              f"{ResNetConfig.architecture!r}")
    return ViTConfig.from_dict(d)


def from_pretrained(path: str | os.PathLike, **overrides: Any) -> nn.Module:
    """Rebuild a model saved by ``save_pretrained``, in eval mode. ``overrides`` change config fields that
    do not alter parameter shapes (e.g. ``drop_rate``, ``dynamic_img_size``); for anything else (another
    size, a new head, other formats) use ``vitlab.load_model``."""
    cfg = replace(read_config(path), **overrides)
    weights = Path(path) / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found next to {CONFIG_NAME}")
    model = model_from_config(cfg)
    check_and_load(model, load_file(str(weights)), source=str(weights), strict=True)
    return model.eval()


def describe_models(pattern: str = "*") -> str:
    """A table of registered names with their parameter counts (at each variant's default size)."""
    import torch

    rows = []
    for name in list_models(pattern):
        cfg = get_config(name)
        with torch.device("meta"):  # count without allocating or initialising anything
            n = sum(p.numel() for p in model_from_config(cfg).parameters())
        kind = f"ResNet {cfg.layers}" if isinstance(cfg, ResNetConfig) else f"patch {cfg.patch_size}"
        rows.append(f"{name:<16} {n:>14,}  {cfg.img_size[0]}x{cfg.img_size[1]}  {kind}")
    if not rows:
        raise ConfigError(f"no model matches {pattern!r}; `vitlab models` lists them all")
    return "\n".join(rows)
