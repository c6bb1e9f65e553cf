"""The ResNet part of Google's official hybrid checkpoints (R50+ViT-B_16.npz ...) <-> vitlab keys.

Official names (vit_jax/models_vit.py, models_resnet.py): ``conv_root/kernel`` (7,7,in,64w),
``gn_root/{scale,bias}``, ``block{s}/unit{u}/{conv1,conv2,conv3,conv_proj}/kernel`` (HWIO) and
``.../{gn1,gn2,gn3,gn_proj}/{scale,bias}``; stages and units count from 1. The files written by the first
release store GroupNorm parameters as (1,1,1,C), later ones as (C,): both load. vitlab's keys mirror
timm's ResNetV2 under ``patch_embed.backbone.``; a root-only backbone (R+ViT-Ti/16) is timm's bare stem,
so its keys have no ``stem.`` level. The ViT part of the file is ``official.py``'s job.
"""
from __future__ import annotations

import re

import numpy as np
import torch
from torch import Tensor

PREFIX = "patch_embed.backbone."
_UNIT = re.compile(r"^block(\d+)/unit(\d+)/(conv1|conv2|conv3|conv_proj|gn1|gn2|gn3|gn_proj)/(kernel|scale|bias)$")
_OURS = re.compile(r"^stages\.(\d+)\.blocks\.(\d+)\.(conv1|conv2|conv3|norm1|norm2|norm3|downsample\.conv|"
                   r"downsample\.norm)\.(weight|bias)$")
_LAYER_TO_OURS = {"conv1": "conv1", "conv2": "conv2", "conv3": "conv3", "conv_proj": "downsample.conv",
                  "gn1": "norm1", "gn2": "norm2", "gn3": "norm3", "gn_proj": "downsample.norm"}
_OURS_TO_LAYER = {v: k for k, v in _LAYER_TO_OURS.items()}
_PARAM_TO_OURS = {"kernel": "weight", "scale": "weight", "bias": "bias"}


def _kernel_to_torch(k: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(k).transpose(3, 2, 0, 1)))  # HWIO -> OIHW


def _vector(v: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(v).reshape(-1)))  # (C,) or (1,1,1,C) -> (C,)


def hybrid_to_vitlab(arrays: dict[str, np.ndarray]) -> dict[str, Tensor]:
    """Official ResNet-hybrid arrays -> vitlab state-dict entries under ``patch_embed.backbone.``.

    Keys that are not part of the official ResNet layout are passed through unchanged, so a strict
    load names them as unexpected instead of silently dropping them.
    """
    staged = any(k.startswith("block") for k in arrays)
    stem = PREFIX + ("stem." if staged else "")
    out: dict[str, Tensor] = {}
    for key, value in arrays.items():
        if key == "conv_root/kernel":
            out[stem + "conv.weight"] = _kernel_to_torch(value)
        elif key in ("gn_root/scale", "gn_root/bias"):
            out[stem + "norm." + _PARAM_TO_OURS[key.rsplit("/", 1)[1]]] = _vector(value)
        elif m := _UNIT.match(key):
            s, u, layer, param = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
            if s < 1 or u < 1:
                raise ValueError(f"{key}: official stage and unit numbers start at 1")
            dst = f"{PREFIX}stages.{s - 1}.blocks.{u - 1}.{_LAYER_TO_OURS[layer]}.{_PARAM_TO_OURS[param]}"
            out[dst] = _kernel_to_torch(value) if param == "kernel" else _vector(value)
        else:
            out[key] = torch.as_tensor(np.asarray(value))
    return out


def hybrid_from_vitlab(state: dict[str, Tensor]) -> dict[str, np.ndarray]:
    """vitlab ``patch_embed.backbone.*`` entries -> official arrays (GroupNorm parameters as (C,),
    the layout of current files). Anything else is refused with its name."""
    out: dict[str, np.ndarray] = {}
    unknown = []
    for key, value in state.items():
        v = value.detach().cpu().numpy()
        name = key[len(PREFIX):] if key.startswith(PREFIX) else None
        root = name and re.match(r"^(stem\.)?(conv|norm)\.(weight|bias)$", name)
        if root:
            part, param = root.group(2), root.group(3)
            if part == "conv" and param == "weight":
                out["conv_root/kernel"] = np.ascontiguousarray(v.transpose(2, 3, 1, 0))
            elif part == "norm":
                out[f"gn_root/{'scale' if param == 'weight' else 'bias'}"] = v.reshape(-1)
            else:
                unknown.append(key)
        elif name and (m := _OURS.match(name)):
            s, u, layer, param = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
            official = _OURS_TO_LAYER[layer]
            base = f"block{s + 1}/unit{u + 1}/{official}/"
            if official.startswith("conv") and param == "weight":
                out[base + "kernel"] = np.ascontiguousarray(v.transpose(2, 3, 1, 0))  # OIHW -> HWIO
            elif official.startswith("gn"):
                out[base + ("scale" if param == "weight" else "bias")] = v.reshape(-1)
            else:
                unknown.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"no official ResNet-hybrid name for {sorted(unknown)}; expected keys under "
                         f"{PREFIX!r} as built by vitlab.models.resnet")
    return out
