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

# Today's backbones: the same model with the switches of vit.py (timm's names in brackets). Each is its
# published image tower without a classifier (num_classes=0: features), at its pretraining resolution,
# with the preprocessing its weights expect and the position-embedding resampling timm applies to them.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
BACKBONE = dict(num_classes=0, pos_resample="bicubic_aa", eval_interpolation="bicubic")

# DINOv2 (Oquab et al. 2023) [vit_{small,base,large,giant}_patch14{,_reg4}_dinov2]: LayerScale, exact GELU,
# 518 px; the reg4 models add 4 registers (Darcet et al. 2023), their class token without position embedding.
# g is DINOv2's own giant (1536 wide, 24 heads, SwiGLU MLP of 4096), not the "g" of Zhai et al.
DINOV2 = dict(img_size=518, init_values=1e-5, act="gelu", mean=IMAGENET_MEAN, std=IMAGENET_STD, eval_resize="shorter",
              **BACKBONE)
for _size in ("s", "b", "l", "g"):
    _depth, _dim, _mlp, _heads = (40, 1536, 4096, 24) if _size == "g" else SIZES[_size]
    _shape = dict(patch_size=14, depth=_depth, embed_dim=_dim, mlp_dim=_mlp, num_heads=_heads,
                  **{**DINOV2, **({"act": "swiglu"} if _size == "g" else {})})
    register(f"vit_{_size}14_dinov2", ViTConfig(**_shape))
    register(f"vit_{_size}14_reg4_dinov2", ViTConfig(reg_tokens=4, no_embed_class=True, **_shape))

# SigLIP (Zhai et al. 2023) [vit_base_patch16_siglip_{224,256,384}, vit_so400m_patch14_siglip_{224,378}]: no class
# token, attention-pool head, tanh GELU (big_vision's), inputs scaled to [-1, 1]. So400m is the shape-optimised
# 400M model of Alabdulmohsin et al. 2023 (1152 wide, 27 deep, MLP 4304).
SIGLIP = dict(classifier="map", act="gelu_tanh", **BACKBONE)
for _res in (224, 256, 384):
    register(f"vit_b16_siglip_{_res}", vit_config("b", 16, img_size=_res, **SIGLIP))
for _res in (224, 378):
    register(f"vit_so400m14_siglip_{_res}", ViTConfig(img_size=_res, patch_size=14, embed_dim=1152, depth=27, num_heads=16,
                                                    mlp_dim=4304, **SIGLIP))

# OpenAI CLIP image towers (Radford et al. 2021) [vit_{base_patch16,large_patch14}_clip_quickgelu_224]: a LayerNorm
# before the blocks, no patch bias, quick-GELU, LayerNorm eps 1e-5; the image is resized by its shorter side.
CLIP = dict(pre_norm=True, patch_bias=False, act="quick_gelu", norm_eps=1e-5, mean=CLIP_MEAN, std=CLIP_STD,
            eval_resize="shorter", **BACKBONE)
register("vit_b16_clip", vit_config("b", 16, **CLIP))
register("vit_l14_clip", vit_config("l", 14, **CLIP))

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


def heads_by_width() -> dict[int, int]:
    """embed_dim -> num_heads of the registered ViTs: the head count of a checkpoint whose shapes cannot say it."""
    return {cfg.embed_dim: cfg.num_heads for cfg in map(get_config, _REGISTRY) if isinstance(cfg, ViTConfig)}


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
        rows.append(f"{name:<24} {n:>14,}  {cfg.img_size[0]}x{cfg.img_size[1]}  {kind}")
    if not rows:
        raise ConfigError(f"no model matches {pattern!r}; `vitlab models` lists them all")
    return "\n".join(rows)
