"""Hugging Face ``transformers`` ViT (ViTModel / ViTForImageClassification) <-> vitlab state dicts.

Files on the Hub use ``vit.embeddings.*``, ``vit.encoder.layer.N.attention.attention.{query,key,value}``,
``attention.output.dense``, ``intermediate.dense``, ``output.dense``, ``layernorm_{before,after}``,
``vit.layernorm``, ``classifier`` (ViTModel files drop the ``vit.`` prefix and may carry
``pooler.dense``: Dense + tanh on the class token, i.e. vitlab's pre_logits). transformers 5 renames
these in memory (``layers.N.attention.{q,k,v,o}_proj``, ``mlp.fc1/fc2``) but still writes the Hub
names; both are read here, and the Hub names are written.
"""
from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor

from ..data.preprocess import PIL_FILTERS, Preprocess
from ..models.vit import VisionTransformer
from .timm import full_pos_embed

ACT_FROM_HF = {"gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "gelu_fast": "gelu_tanh",
               "relu": "relu"}
ACT_TO_HF = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "relu": "relu"}

_GLOBAL = {
    "embeddings.cls_token": "cls_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection": "patch_embed.proj",
    "layernorm": "norm",
    "pooler.dense": "pre_logits.fc",
    "classifier": "head",
}
# Per-layer names (Hub names and transformers-5 in-memory names) -> vitlab block sub-module.
_LAYER = {
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
    "attention.output.dense": "attn.proj",
    "attention.o_proj": "attn.proj",
    "intermediate.dense": "mlp.fc1",
    "mlp.fc1": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "mlp.fc2": "mlp.fc2",
}
_QKV = {"attention.attention.query": 0, "attention.attention.key": 1, "attention.attention.value": 2,
        "attention.q_proj": 0, "attention.k_proj": 1, "attention.v_proj": 2}
_LAYER_KEY = re.compile(r"^(?:encoder\.layer|layers)\.(\d+)\.(.+)\.(weight|bias)$")


def hf_to_vitlab(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """HF ViT keys -> vitlab keys (q, k, v fused into qkv rows); unknown keys pass through unchanged."""
    out: dict[str, Tensor] = {}
    qkv: dict[tuple[int, str], list[Tensor | None]] = {}
    for key, v in state.items():
        k = key[len("vit."):] if key.startswith("vit.") else key
        if m := _LAYER_KEY.match(k):
            i, name, kind = int(m.group(1)), m.group(2), m.group(3)
            if name in _QKV:
                qkv.setdefault((i, kind), [None, None, None])[_QKV[name]] = v
                continue
            if name in _LAYER:
                out[f"blocks.{i}.{_LAYER[name]}.{kind}"] = v
                continue
        stem, _, kind = k.rpartition(".")
        if k in _GLOBAL:
            out[_GLOBAL[k]] = v
        elif stem in _GLOBAL and kind in ("weight", "bias"):
            out[f"{_GLOBAL[stem]}.{kind}"] = v
        else:
            out[key] = v
    for (i, kind), parts in qkv.items():
        if any(p is None for p in parts):
            raise ValueError(f"HF layer {i} lacks one of query/key/value {kind}: the checkpoint is incomplete")
        out[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat(parts, 0)
    return out


def vitlab_to_hf(model: VisionTransformer) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """(config.json dict, state dict) in the Hub layout. A model with a head becomes
    ViTForImageClassification; one without (num_classes=0) becomes ViTModel, its pre_logits the pooler."""
    cfg = model.cfg
    why = []
    if cfg.classifier != "token":
        why.append("HF ViT classifies from the class token only (this model uses 'gap')")
    if cfg.backbone_layers is not None:
        why.append("HF ViT has no ResNet-hybrid stem")
    if cfg.act not in ACT_TO_HF:
        why.append(f"no HF activation for act={cfg.act!r}")
    if cfg.representation_size and cfg.num_classes:
        why.append("ViTForImageClassification has no pre-logits layer: reset_classifier(n, drop_pre_logits=True) "
                   "for a classifier, or reset_classifier(0) to export the encoder + pooler as a ViTModel")
    if why:
        raise ValueError("cannot export to Hugging Face ViT: " + "; ".join(why))
    classify = cfg.num_classes > 0
    prefix = "vit." if classify else ""
    own = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    out = {
        f"{prefix}embeddings.cls_token": own["cls_token"],
        f"{prefix}embeddings.position_embeddings": full_pos_embed(model),
        f"{prefix}embeddings.patch_embeddings.projection.weight": own["patch_embed.proj.weight"],
        f"{prefix}embeddings.patch_embeddings.projection.bias": own["patch_embed.proj.bias"],
    }
    hub = {"norm1": "layernorm_before", "norm2": "layernorm_after", "attn.proj": "attention.output.dense",
           "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense"}
    for i in range(cfg.depth):
        b, L = f"blocks.{i}.", f"{prefix}encoder.layer.{i}."
        for kind in ("weight", "bias"):
            for ours, theirs in hub.items():
                out[f"{L}{theirs}.{kind}"] = own[f"{b}{ours}.{kind}"]
            for name, part in zip(("query", "key", "value"), own[f"{b}attn.qkv.{kind}"].chunk(3, 0)):
                out[f"{L}attention.attention.{name}.{kind}"] = part.contiguous()
    for kind in ("weight", "bias"):
        out[f"{prefix}layernorm.{kind}"] = own[f"norm.{kind}"]
        if classify:
            out[f"classifier.{kind}"] = own[f"head.{kind}"]
        elif cfg.representation_size:
            out[f"pooler.dense.{kind}"] = own[f"pre_logits.fc.{kind}"]
    h, w = cfg.img_size
    labels = cfg.class_names or [f"LABEL_{i}" for i in range(cfg.num_classes)]
    config = {
        "architectures": ["ViTForImageClassification" if classify else "ViTModel"],
        "model_type": "vit",
        "hidden_size": cfg.embed_dim,
        "num_hidden_layers": cfg.depth,
        "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.mlp_dim,
        "hidden_act": ACT_TO_HF[cfg.act],
        "hidden_dropout_prob": cfg.drop_rate,
        "attention_probs_dropout_prob": cfg.attn_drop_rate,
        "initializer_range": 0.02,
        "layer_norm_eps": cfg.norm_eps,
        "image_size": h if h == w else [h, w],
        "patch_size": cfg.patch_size,
        "num_channels": cfg.in_chans,
        "qkv_bias": True,
        "encoder_stride": cfg.patch_size,
        "pooler_output_size": cfg.representation_size or cfg.embed_dim,
        "pooler_act": "tanh",
        "id2label": {str(i): n for i, n in enumerate(labels)},
        "label2id": {n: i for i, n in enumerate(labels)},
    }
    return config, out


def preprocessor_config(model: VisionTransformer) -> dict[str, Any]:
    """HF image-processor settings carrying the model's input size, normalisation and test-time preprocessing:
    ViTImageProcessor (the whole image resized) when nothing is cropped, DeiTImageProcessor (the whole image
    resized to img_size / crop_pct, centre crop) for eval_resize=whole, BitImageProcessor (shortest edge,
    centre crop; exact for a square img_size) for eval_resize=shorter."""
    pre = Preprocess.from_config(model.cfg)
    (h, w), (sh, sw) = pre.img_size, pre.scaled_size
    common = {"do_resize": True, "resample": int(PIL_FILTERS[pre.interpolation]), "do_rescale": True,
              "rescale_factor": 1 / 255, "do_normalize": True,
              "image_mean": list(model.cfg.mean), "image_std": list(model.cfg.std)}
    crop = {"do_center_crop": True, "crop_size": {"height": h, "width": w}}
    if pre.resize == "shorter":
        return {"image_processor_type": "BitImageProcessor", "size": {"shortest_edge": max(sh, sw)}, **crop,
                "do_convert_rgb": model.cfg.in_chans == 3, **common}
    if (sh, sw) != (h, w):
        return {"image_processor_type": "DeiTImageProcessor", "size": {"height": sh, "width": sw}, **crop, **common}
    return {"image_processor_type": "ViTImageProcessor", "size": {"height": h, "width": w}, **common}


def _preprocess_fields(pre: dict[str, Any]) -> dict[str, Any]:
    """ViTConfig eval_* fields from HF image-processor settings: a centre crop from a size given as
    shortest_edge is eval_resize=shorter, from a size given as height/width (or an int: ViT and DeiT
    processors make it square) is whole; crop_pct = crop / size; resample 2 / 3 is bilinear / bicubic."""
    out: dict[str, Any] = {}
    resample = {int(v): k for k, v in PIL_FILTERS.items()}.get(pre.get("resample"))
    if resample:
        out["eval_interpolation"] = resample
    size, crop = pre.get("size"), pre.get("crop_size")
    if pre.get("do_center_crop") and crop is not None and size is not None:
        crop_h = crop["height"] if isinstance(crop, dict) else crop
        if isinstance(size, dict) and "shortest_edge" in size:
            out["eval_resize"], size_h = "shorter", size["shortest_edge"]
        else:
            out["eval_resize"], size_h = "whole", size["height"] if isinstance(size, dict) else size
        out["eval_crop_pct"] = min(1.0, crop_h / size_h)
    return out


def infer_config(hf: dict[str, Any], state: dict[str, Tensor], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """ViTConfig fields from an HF config.json and the (vitlab-keyed) weights it came with."""
    act = hf.get("hidden_act", "gelu")
    if act not in ACT_FROM_HF:
        raise ValueError(f"HF hidden_act={act!r} has no vitlab equivalent; supported: {sorted(ACT_FROM_HF)}")
    if not hf.get("qkv_bias", True):
        raise ValueError("HF config has qkv_bias=false; vitlab's attention always has q/k/v biases")
    patch = hf.get("patch_size", 16)
    if isinstance(patch, (list, tuple)):
        if patch[0] != patch[1]:
            raise ValueError(f"non-square patches {patch} are not supported")
        patch = patch[0]
    num_classes = int(state["head.weight"].shape[0]) if "head.weight" in state else 0
    cfg: dict[str, Any] = dict(
        img_size=hf.get("image_size", 224), patch_size=int(patch), in_chans=hf.get("num_channels", 3),
        embed_dim=hf["hidden_size"], depth=hf["num_hidden_layers"], num_heads=hf["num_attention_heads"],
        mlp_dim=hf["intermediate_size"], act=ACT_FROM_HF[act], norm_eps=hf.get("layer_norm_eps", 1e-12),
        drop_rate=hf.get("hidden_dropout_prob", 0.0), attn_drop_rate=hf.get("attention_probs_dropout_prob", 0.0),
        num_classes=num_classes, classifier="token",
        representation_size=int(state["pre_logits.fc.weight"].shape[0]) if "pre_logits.fc.weight" in state else None,
    )
    labels = [hf.get("id2label", {}).get(str(i)) for i in range(num_classes)]
    if num_classes and all(labels) and labels != [f"LABEL_{i}" for i in range(num_classes)]:
        cfg["class_names"] = tuple(labels)
    pre = (extra or {}).get("preprocessor", {})
    if "image_mean" in pre and "image_std" in pre:
        cfg["mean"], cfg["std"] = tuple(pre["image_mean"]), tuple(pre["image_std"])
    cfg.update(_preprocess_fields(pre))
    return cfg
