"""timm state dicts <-> vitlab state dicts.

vitlab's parameter names follow timm's VisionTransformer on purpose (patch_embed.proj, cls_token,
reg_token, pos_embed, norm_pre, blocks.N.{norm1,attn.qkv,attn.{q,k}_norm,ls1.gamma,attn.proj,norm2,mlp.fc1,
mlp.fc2,ls2.gamma}, norm, attn_pool.*, head, the old pre_logits.fc), and the ResNet hybrids'
``patch_embed.backbone.`` keys mirror timm's ResNetV2, so the conversion is mostly a check. What timm
has and vitlab does not is refused with a reason.

Two things no shape says: the activation (timm's default, exact GELU, is assumed: pass ``act=`` for
its ``*_quickgelu`` CLIP models or ``*_siglip`` weights ported from big_vision with tanh GELU) and the
LayerNorm eps (1e-6, timm's ViT default; 1e-5 for a file with CLIP's pre-encoder norm, as timm builds
its CLIP towers).
"""
from __future__ import annotations

import math
import re
from typing import Any

import torch
from torch import Tensor

from ..models.resnet import backbone_stride
from ..models.vit import VisionTransformer

ROOT_CONV_KEYS = ("patch_embed.backbone.stem.conv.weight", "patch_embed.backbone.conv.weight")


def timm_to_vitlab(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """timm keys -> vitlab keys (the same names); unknown keys pass through for the strict check to list."""
    if any(k.startswith("fc_norm.") for k in state) and not any(k.startswith("norm.") for k in state):
        raise ValueError(
            "this timm checkpoint normalises after pooling (fc_norm, timm's global_pool='avg' default); vitlab's "
            "'gap' classifier follows the official code and normalises the tokens before pooling, so the "
            "outputs would differ. Use a checkpoint with final norm (fc_norm=False) instead"
        )
    return dict(state)


def vitlab_to_timm(model: VisionTransformer) -> dict[str, Tensor]:
    """A timm-style state dict of ``model``. 2-D learned, sin-cos and no position embeddings become timm's
    single ``pos_embed`` holding the same values at the model's grid (the class entry, if any, zero)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for k in ("pos_embed_row", "pos_embed_col"):
        state.pop(k, None)
    state["pos_embed"] = full_pos_embed(model)
    return state


@torch.no_grad()
def full_pos_embed(model: VisionTransformer) -> Tensor:
    """The (1, num_pos_prefix + h*w, D) position embedding the model adds at its configured grid."""
    if model.pos_embed is not None:
        return model.pos_embed.detach().cpu().clone()
    if model.training and model.cfg.drop_rate:
        raise ValueError("call model.eval() before exporting: position dropout would corrupt the embedding")
    D = model.cfg.embed_dim
    x = torch.zeros(1, model.grid[0] * model.grid[1], D, device=model.norm.weight.device)
    patches = model._pos_embed(x, model.grid)[:, model.num_prefix_tokens :]  # zero tokens + position = the position
    return torch.cat([torch.zeros(1, model.num_pos_prefix, D), patches.cpu()], dim=1)


def infer_config(state: dict[str, Tensor], num_heads: int | None = None, given: frozenset[str] = frozenset()) -> dict[str, Any]:
    """ViTConfig fields read off vitlab/timm-keyed shapes. The head count is not in any shape: it comes
    from ``num_heads`` or from the registry when the width matches a known variant. ``given``: fields the
    caller sets itself, so their absence from the shapes is no error."""
    from ..models.registry import heads_by_width

    if "patch_embed.proj.weight" not in state:
        raise ValueError("not a ViT state dict: no 'patch_embed.proj.weight'")
    dim, in_chans, p, _ = state["patch_embed.proj.weight"].shape
    depth = 1 + max((int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))), default=-1)
    if num_heads is None:
        known = heads_by_width()
        if dim not in known:
            raise ValueError(f"cannot infer the number of attention heads for embed_dim={dim} (no registered "
                             "variant has that width); pass num_heads=... (CLI: --num-heads)")
        num_heads = known[dim]
    token = "cls_token" in state
    reg_tokens = int(state["reg_token"].shape[1]) if "reg_token" in state else 0
    mlp_dim, gated = 4 * int(dim), False
    if depth:  # a gated MLP's fc1 is twice as wide as fc2's input
        mlp_dim = int(state["blocks.0.mlp.fc2.weight"].shape[1])
        gated = state["blocks.0.mlp.fc1.weight"].shape[0] == 2 * mlp_dim
    pre_norm = "norm_pre.weight" in state
    cfg: dict[str, Any] = dict(
        patch_size=int(p), in_chans=int(in_chans), embed_dim=int(dim), depth=depth, num_heads=int(num_heads),
        mlp_dim=mlp_dim, classifier="map" if "attn_pool.latent" in state else "token" if token else "gap",
        act="swiglu" if gated else "gelu", norm_eps=1e-5 if pre_norm else 1e-6,
        representation_size=int(state["pre_logits.fc.weight"].shape[0]) if "pre_logits.fc.weight" in state else None,
        num_classes=int(state["head.weight"].shape[0]) if "head.weight" in state else 0,
        reg_tokens=reg_tokens, pre_norm=pre_norm, patch_bias="patch_embed.proj.bias" in state,
        init_values=1e-5 if "blocks.0.ls1.gamma" in state else None,  # the loaded gammas replace it
        qk_norm="blocks.0.attn.q_norm.weight" in state,
    )
    if reg_tokens or pre_norm or gated or cfg["classifier"] == "map" or cfg["init_values"] or cfg["qk_norm"]:
        cfg["pos_resample"] = "bicubic_aa"  # a new size resamples as timm does for these models
    stride = 1
    root = next((k for k in ROOT_CONV_KEYS if k in state), None)
    if root is not None:  # timm ResNetV2 hybrid (or its bare stem for root-only hybrids)
        stages: dict[int, int] = {}
        for k in state:
            if m := re.match(r"patch_embed\.backbone\.stages\.(\d+)\.blocks\.(\d+)\.", k):
                s, b = int(m.group(1)), int(m.group(2))
                stages[s] = max(stages.get(s, 0), b + 1)
        cfg["backbone_layers"] = tuple(stages[s] for s in sorted(stages))
        cfg["backbone_width"] = int(state[root].shape[0]) // 64
        cfg["in_chans"] = int(state[root].shape[1])  # patch_embed.proj sees ResNet features, not pixels
        stride = backbone_stride(cfg["backbone_layers"])
    if "pos_embed" in state:
        total, prefix = state["pos_embed"].shape[1], int(token) + reg_tokens
        # Entries for the prefix tokens too, or (no_embed_class) patches only: the one that is a square grid.
        square = lambda k: k >= 0 and math.isqrt(k) ** 2 == k  # noqa: E731
        cfg["no_embed_class"] = bool(prefix) and square(total) and not square(total - prefix)
        n = total if cfg["no_embed_class"] else total - prefix
        gh = gw = int(round(n**0.5))
        if gh * gw != n:
            raise ValueError(f"{n} position entries are not a square grid; pass img_size=(h, w)")
        cfg["pos_embed"] = "learn"
    elif "pos_embed_row" in state:
        gh, gw = state["pos_embed_row"].shape[1], state["pos_embed_col"].shape[1]
        cfg["pos_embed"] = "learn2d"
    elif {"pos_embed", "img_size"} <= given:
        return cfg
    else:
        raise ValueError("the state dict has no learned position embedding, so neither its kind (sincos or none) "
                         "nor the image size can be read off it; pass pos_embed=... and img_size=...")
    cfg["img_size"] = (gh * int(p) * stride, gw * int(p) * stride)
    return cfg


def is_hub_config(cfg: dict[str, Any]) -> bool:
    """A timm hub repository's config.json: ``{"architecture": ..., "num_classes": ..., "pretrained_cfg": {...}}``."""
    return isinstance(cfg.get("pretrained_cfg"), dict) and "architecture" in cfg


def hub_metadata(cfg: dict[str, Any]) -> dict[str, Any]:
    """ViTConfig metadata from a timm hub config.json: normalisation, and the test-time preprocessing timm's
    eval transform applies (shorter side to size / crop_pct, centre crop; its interpolation), class names
    when the repository lists them (``label_names``)."""
    pre = cfg["pretrained_cfg"]
    out: dict[str, Any] = {}
    if "mean" in pre and "std" in pre:
        out["mean"], out["std"] = tuple(pre["mean"]), tuple(pre["std"])
    if pre.get("crop_mode", "center") == "center" and "crop_pct" in pre:
        out["eval_resize"], out["eval_crop_pct"] = "shorter", float(pre["crop_pct"])
    if pre.get("interpolation") in ("bilinear", "bicubic"):
        out["eval_interpolation"] = pre["interpolation"]
    names = cfg.get("label_names") or pre.get("label_names")
    if names and len(names) == cfg.get("num_classes", len(names)):
        out["class_names"] = tuple(names)
    return out
