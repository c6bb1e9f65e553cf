"""Google's official .npz checkpoints (google-research/vision_transformer) <-> vitlab state dicts.

The files are flat dicts with '/'-separated Flax names. Kernels are stored input-first (HWIO for the
patch conv, (in, out) for dense layers) and attention keeps heads apart: q/k/v kernels are
(D, heads, head_dim) and the output kernel (heads, head_dim, D). Files written by the pre-linen code
number sub-modules globally inside a block (LayerNorm_0, MultiHeadDotProductAttention_1, LayerNorm_2,
MlpBlock_3); linen files number them per type (LayerNorm_0, MultiHeadDotProductAttention_0,
LayerNorm_1, MlpBlock_0). ResNet-hybrid keys (conv_root, gn_root, block{s}/unit{u}) are converted by
``official_hybrid``; the ViT part here treats the hybrid's 1x1 ``embedding`` conv like any patch conv.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..models.resnet import backbone_stride

# Block sub-module names: (norm1, attention, norm2, mlp)
LINEN = ("LayerNorm_0", "MultiHeadDotProductAttention_0", "LayerNorm_1", "MlpBlock_0")
PRE_LINEN = ("LayerNorm_0", "MultiHeadDotProductAttention_1", "LayerNorm_2", "MlpBlock_3")
BLOCK = "Transformer/encoderblock_{}/"
POS = "Transformer/posembed_input/pos_embedding"
_PREFIXES = ("opt/target/", "params/", "target/")  # wrappers some training loops saved around the params
_RESNET_KEY = re.compile(r"^(conv_root|gn_root|block\d+)/")


def _t(x: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))


def strip_prefix(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    for p in _PREFIXES:
        if arrays and all(k.startswith(p) for k in arrays):
            return {k[len(p):]: v for k, v in arrays.items()}
    return arrays


def block_names(arrays: dict[str, Any]) -> tuple[str, str, str, str]:
    """Which naming the file uses; linen unless a pre-linen attention name is present."""
    return PRE_LINEN if any(PRE_LINEN[1] in k for k in arrays) else LINEN


def depth_of(arrays: dict[str, Any]) -> int:
    idx = {int(m.group(1)) for k in arrays if (m := re.match(r"Transformer/encoderblock_(\d+)/", k))}
    return max(idx) + 1 if idx else 0


def official_to_vitlab(arrays: dict[str, np.ndarray]) -> dict[str, Tensor]:
    """Convert an official checkpoint's arrays to vitlab keys. Keys it does not know are passed through
    unchanged, so the strict check names them as unexpected."""
    a = dict(strip_prefix(arrays))
    out: dict[str, Tensor] = {}

    def move(src: str, dst: str, fn=lambda x: x) -> None:
        if src in a:
            out[dst] = _t(fn(a.pop(src)))

    move("embedding/kernel", "patch_embed.proj.weight", lambda k: k.transpose(3, 2, 0, 1))  # HWIO -> OIHW
    move("embedding/bias", "patch_embed.proj.bias")
    move("cls", "cls_token")
    move(POS, "pos_embed")
    move("pos_embedding", "pos_embed")  # big_vision keeps it at the top level
    ln1, att, ln2, mlp = block_names(a)
    for i in range(depth_of(a)):
        b, d = BLOCK.format(i), f"blocks.{i}."
        for src, dst in ((ln1, "norm1"), (ln2, "norm2")):
            move(f"{b}{src}/scale", f"{d}{dst}.weight")
            move(f"{b}{src}/bias", f"{d}{dst}.bias")
        qkv = [f"{b}{att}/{n}/" for n in ("query", "key", "value")]
        if all(q + "kernel" in a and q + "bias" in a for q in qkv):
            kernels = [a.pop(q + "kernel") for q in qkv]  # (D, H, hd) -> rows (H*hd, D)
            out[f"{d}attn.qkv.weight"] = _t(np.concatenate([k.reshape(k.shape[0], -1).T for k in kernels], 0))
            out[f"{d}attn.qkv.bias"] = _t(np.concatenate([a.pop(q + "bias").reshape(-1) for q in qkv], 0))
        move(f"{b}{att}/out/kernel", f"{d}attn.proj.weight", lambda k: k.reshape(-1, k.shape[-1]).T)
        move(f"{b}{att}/out/bias", f"{d}attn.proj.bias")
        for j, fc in ((0, "fc1"), (1, "fc2")):
            move(f"{b}{mlp}/Dense_{j}/kernel", f"{d}mlp.{fc}.weight", lambda k: k.T)
            move(f"{b}{mlp}/Dense_{j}/bias", f"{d}mlp.{fc}.bias")
    move("Transformer/encoder_norm/scale", "norm.weight")
    move("Transformer/encoder_norm/bias", "norm.bias")
    for src, dst in (("pre_logits", "pre_logits.fc"), ("head", "head")):
        move(f"{src}/kernel", f"{dst}.weight", lambda k: k.T)
        move(f"{src}/bias", f"{dst}.bias")
    resnet = {k: a.pop(k) for k in list(a) if _RESNET_KEY.match(k)}
    if resnet:
        from .official_hybrid import hybrid_to_vitlab

        out.update(hybrid_to_vitlab(resnet))
    out.update({k: _t(v) for k, v in a.items()})  # leftovers: reported as unexpected by the strict check
    return out


def vitlab_to_official(state: dict[str, Tensor], num_heads: int, names: str = "linen") -> dict[str, np.ndarray]:
    """The inverse of ``official_to_vitlab``: vitlab keys -> official .npz arrays (``names``: linen|pre-linen)."""
    if names not in ("linen", "pre-linen"):
        raise ValueError(f"names={names!r}: choose 'linen' or 'pre-linen'")
    ln1, att, ln2, mlp = LINEN if names == "linen" else PRE_LINEN
    s = {k: v.detach().cpu().numpy() for k, v in state.items()}
    out: dict[str, np.ndarray] = {}

    def put(src: str, dst: str, fn=lambda x: x) -> None:
        if src in s:
            out[dst] = np.ascontiguousarray(fn(s.pop(src)))

    put("patch_embed.proj.weight", "embedding/kernel", lambda w: w.transpose(2, 3, 1, 0))
    put("patch_embed.proj.bias", "embedding/bias")
    put("cls_token", "cls")
    put("pos_embed", POS)
    depth = len({k.split(".")[1] for k in s if k.startswith("blocks.")})
    for i in range(depth):
        b, d = BLOCK.format(i), f"blocks.{i}."
        for dst, src in ((ln1, "norm1"), (ln2, "norm2")):
            put(f"{d}{src}.weight", f"{b}{dst}/scale")
            put(f"{d}{src}.bias", f"{b}{dst}/bias")
        w, bias = s.pop(f"{d}attn.qkv.weight"), s.pop(f"{d}attn.qkv.bias")
        D = w.shape[1]
        for n, wn, bn in zip(("query", "key", "value"), np.split(w, 3, 0), np.split(bias, 3, 0)):
            out[f"{b}{att}/{n}/kernel"] = np.ascontiguousarray(wn.T.reshape(D, num_heads, -1))
            out[f"{b}{att}/{n}/bias"] = bn.reshape(num_heads, -1)
        put(f"{d}attn.proj.weight", f"{b}{att}/out/kernel", lambda k: k.T.reshape(num_heads, -1, k.shape[0]))
        put(f"{d}attn.proj.bias", f"{b}{att}/out/bias")
        for j, fc in ((0, "fc1"), (1, "fc2")):
            put(f"{d}mlp.{fc}.weight", f"{b}{mlp}/Dense_{j}/kernel", lambda k: k.T)
            put(f"{d}mlp.{fc}.bias", f"{b}{mlp}/Dense_{j}/bias")
    put("norm.weight", "Transformer/encoder_norm/scale")
    put("norm.bias", "Transformer/encoder_norm/bias")
    for dst, src in (("pre_logits", "pre_logits.fc"), ("head", "head")):
        put(f"{src}.weight", f"{dst}/kernel", lambda k: k.T)
        put(f"{src}.bias", f"{dst}/bias")
    backbone = {k: s.pop(k) for k in list(s) if k.startswith("patch_embed.backbone.")}
    if backbone:
        from .official_hybrid import hybrid_from_vitlab

        out.update(hybrid_from_vitlab({k: torch.from_numpy(v) for k, v in backbone.items()}))
    if s:
        raise ValueError(f"the official .npz layout has no place for {sorted(s)} (learned 2-D position "
                         "embeddings are not part of it); export to vitlab or timm instead")
    return out


def infer_config(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """ViTConfig fields read off an official file's shapes (official models use tanh GELU, eps 1e-6)."""
    a = strip_prefix(arrays)
    if "embedding/kernel" not in a:
        raise ValueError("not an official ViT checkpoint: no 'embedding/kernel' array")
    p, _, in_chans, dim = a["embedding/kernel"].shape
    _, att, _, mlp = block_names(a)
    depth = depth_of(a)
    if depth == 0:
        raise ValueError("official checkpoint has no Transformer/encoderblock_N arrays")
    heads = a[f"{BLOCK.format(0)}{att}/query/kernel"].shape[1]
    cfg: dict[str, Any] = dict(
        patch_size=int(p), in_chans=int(in_chans), embed_dim=int(dim), depth=depth, num_heads=int(heads),
        mlp_dim=int(a[f"{BLOCK.format(0)}{mlp}/Dense_0/kernel"].shape[1]),
        classifier="token" if "cls" in a else "gap", act="gelu_tanh", norm_eps=1e-6,
        representation_size=int(a["pre_logits/kernel"].shape[1]) if "pre_logits/kernel" in a else None,
        num_classes=int(a["head/kernel"].shape[1]) if "head/kernel" in a else 0,
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),  # inputs scaled to [-1, 1]
    )
    stride = 1
    if "conv_root/kernel" in a:  # BiT hybrid: stage depths from the unit names, width from the root conv
        stages = {}
        for k in a:
            if m := re.match(r"block(\d+)/unit(\d+)/", k):
                stages[int(m.group(1))] = max(stages.get(int(m.group(1)), 0), int(m.group(2)))
        cfg["backbone_layers"] = tuple(stages[s] for s in sorted(stages))
        cfg["backbone_width"] = int(a["conv_root/kernel"].shape[-1]) // 64
        cfg["in_chans"] = int(a["conv_root/kernel"].shape[2])  # the embedding conv sees ResNet features
        stride = backbone_stride(cfg["backbone_layers"])  # root conv + pool (4), then x2 per later stage
    pos = a.get(POS, a.get("pos_embedding"))
    if pos is None:
        raise ValueError("official checkpoint has no position embedding; pass img_size= to load_model")
    n = pos.shape[1] - (1 if "cls" in a else 0)
    side = int(round(n**0.5))
    if side * side != n:
        raise ValueError(f"official checkpoint has {n} position entries, not a square grid; pass img_size=")
    cfg["img_size"] = side * int(p) * stride
    return cfg
