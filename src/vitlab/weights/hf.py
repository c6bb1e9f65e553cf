"""Hugging Face ``transformers`` ViT and image towers <-> vitlab state dicts.

Files on the Hub use ``vit.embeddings.*``, ``vit.encoder.layer.N.attention.attention.{query,key,value}``,
``attention.output.dense``, ``intermediate.dense``, ``output.dense``, ``layernorm_{before,after}``,
``vit.layernorm``, ``classifier`` (ViTModel files drop the ``vit.`` prefix and may carry
``pooler.dense``: Dense + tanh on the class token, i.e. vitlab's pre_logits). transformers 5 renames
these in memory (``layers.N.attention.{q,k,v,o}_proj``, ``mlp.fc1/fc2``) but still writes the Hub
names; both are read here, and the Hub names are written.

Today's image towers, in vitlab's terms (``family``):

- ``dinov2`` (Dinov2Model, Dinov2WithRegistersModel): ViT names plus ``norm1/norm2``, ``layer_scale{1,2}.
  lambda1`` (LayerScale), ``mlp.weights_{in,out}`` (SwiGLU), ``embeddings.register_tokens``. The class token
  has a position embedding and the registers none: vitlab's reg4 models (``no_embed_class``) hold the sum.
- ``siglip`` (SiglipVisionModel, or a SiglipModel's ``vision_model``): ``encoder.layers.N.{layer_norm1,
  self_attn.{q,k,v,out}_proj, layer_norm2, mlp.fc1/fc2}``, ``post_layernorm``, no class token, and the MAP
  ``head`` (``probe``, a torch MultiheadAttention's fused ``in_proj``, ``layernorm``, ``mlp``).
- ``clip`` (CLIPVisionModel[WithProjection], or a CLIPModel's ``vision_model``): the same layer names,
  ``class_embedding``, ``pre_layrnorm`` (sic) before the blocks, ``post_layernorm`` (on the class token
  only: vitlab normalises every token, the pooled vector is the same), ``visual_projection`` (no bias: the head).
"""
from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor

from ..data.preprocess import PIL_FILTERS, Preprocess
from ..models.registry import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD
from ..models.vit import ViTConfig, VisionTransformer
from .timm import full_pos_embed

ACT_FROM_HF = {"gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "gelu_fast": "gelu_tanh",
               "relu": "relu", "quick_gelu": "quick_gelu"}
ACT_TO_HF = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "relu": "relu", "quick_gelu": "quick_gelu"}

# model_type (formats.HF_MODEL_TYPES) -> family, and each family's defaults where its config.json is silent.
FAMILY = {"vit": "vit", "dinov2": "dinov2", "dinov2_with_registers": "dinov2", "siglip": "siglip",
          "siglip_vision_model": "siglip", "clip": "clip", "clip_vision_model": "clip"}
_DEFAULTS = {
    "vit": dict(hidden_act="gelu", layer_norm_eps=1e-12),
    "dinov2": dict(hidden_act="gelu", layer_norm_eps=1e-6, mean=IMAGENET_MEAN, std=IMAGENET_STD),
    "siglip": dict(hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    "clip": dict(hidden_act="quick_gelu", layer_norm_eps=1e-5, mean=CLIP_MEAN, std=CLIP_STD),
}

_GLOBAL = {
    "embeddings.cls_token": "cls_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection": "patch_embed.proj",
    "layernorm": "norm",
    "pooler.dense": "pre_logits.fc",
    "classifier": "head",
    "embeddings.register_tokens": "reg_token",
    "embeddings.patch_embedding": "patch_embed.proj",
    "pre_layrnorm": "norm_pre",
    "post_layernorm": "norm",
    "head.probe": "attn_pool.latent",
    "head.attention.out_proj": "attn_pool.proj",
    "head.layernorm": "attn_pool.norm",
    "head.mlp.fc1": "attn_pool.mlp.fc1",
    "head.mlp.fc2": "attn_pool.mlp.fc2",
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
    "norm1": "norm1",
    "norm2": "norm2",
    "layer_norm1": "norm1",
    "layer_norm2": "norm2",
    "self_attn.out_proj": "attn.proj",
    "mlp.weights_in": "mlp.fc1",
    "mlp.weights_out": "mlp.fc2",
    "layer_scale1": "ls1",
    "layer_scale2": "ls2",
}
_QKV = {"attention.attention.query": 0, "attention.attention.key": 1, "attention.attention.value": 2,
        "attention.q_proj": 0, "attention.k_proj": 1, "attention.v_proj": 2,
        "self_attn.q_proj": 0, "self_attn.k_proj": 1, "self_attn.v_proj": 2}
_LAYER_KEY = re.compile(r"^(?:encoder\.layers?|layers)\.(\d+)\.(.+)\.(weight|bias|lambda1)$")
_PREFIXES = ("vit.", "dinov2.", "vision_model.")
_TEXT = ("text_model.", "text_projection.", "logit_scale", "logit_bias")  # a full CLIP/SigLIP model's other half


def hf_to_vitlab(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """HF keys -> vitlab keys (q, k, v fused into qkv rows); unknown keys pass through unchanged."""
    out: dict[str, Tensor] = {}
    qkv: dict[tuple[int, str], list[Tensor | None]] = {}
    vision_only = any(k.startswith("vision_model.") for k in state)
    for key, v in state.items():
        k = next((key[len(p):] for p in _PREFIXES if key.startswith(p)), key)
        if (vision_only and key.startswith(_TEXT)) or k == "embeddings.mask_token":
            continue  # the text tower; DINOv2's masked-modelling token, which no unmasked forward reads
        if k in _SPECIAL:
            out.update(_SPECIAL[k](v))
            continue
        if m := _LAYER_KEY.match(k):
            i, name, kind = int(m.group(1)), m.group(2), m.group(3)
            if kind == "lambda1":
                kind = "gamma"
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
    if "reg_token" in out and "pos_embed" in out and "cls_token" in out:
        # DINOv2 with registers: the class token's position entry joins the token (vitlab: no_embed_class).
        out["cls_token"] = out["cls_token"] + out["pos_embed"][:, :1]
        out["pos_embed"] = out["pos_embed"][:, 1:]
    return out


def _split_in_proj(kind: str):
    """A torch MultiheadAttention's fused in_proj (q; k; v rows) -> the pool's q and fused kv."""
    def split(v: Tensor) -> dict[str, Tensor]:
        D = v.shape[0] // 3
        return {f"attn_pool.q.{kind}": v[:D], f"attn_pool.kv.{kind}": v[D:]}
    return split


# Keys whose tensors change shape or split on the way in (CLIP stores vectors where vitlab has (1, N, D)).
_SPECIAL = {
    "embeddings.class_embedding": lambda v: {"cls_token": v.reshape(1, 1, -1)},
    "embeddings.position_embedding.weight": lambda v: {"pos_embed": v.unsqueeze(0)},
    "head.attention.in_proj_weight": _split_in_proj("weight"),
    "head.attention.in_proj_bias": _split_in_proj("bias"),
    "visual_projection.weight": lambda v: {"head.weight": v, "head.bias": torch.zeros(v.shape[0], dtype=v.dtype)},
}


def family(cfg: ViTConfig) -> str:
    """Which transformers model a vitlab config corresponds to: vit, dinov2, siglip or clip."""
    if cfg.classifier == "map":
        return "siglip"
    if cfg.pre_norm:
        return "clip"
    if cfg.init_values is not None or cfg.reg_tokens:
        return "dinov2"
    return "vit"


def vitlab_to_hf(model: VisionTransformer) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """(config.json dict, state dict) in the Hub layout of the transformers model of its ``family``."""
    writer = {"vit": _vit_to_hf, "dinov2": _dinov2_to_hf, "siglip": _siglip_to_hf, "clip": _clip_to_hf}
    return writer[family(model.cfg)](model)


def _refuse(target: str, cfg: ViTConfig, checks: dict[str, bool]) -> None:
    """Raise naming every switch of ``cfg`` that the transformers model ``target`` has no place for."""
    why = [reason for reason, bad in checks.items() if bad]
    if cfg.qk_norm:
        why.append("no transformers image tower has QK-norm")
    if cfg.backbone_layers is not None:
        why.append("no ResNet-hybrid stem")
    if cfg.act not in ACT_TO_HF and cfg.act != "swiglu":
        why.append(f"no HF activation for act={cfg.act!r}")
    if cfg.representation_size:
        why.append("no pre-logits layer")
    if why:
        raise ValueError(f"cannot export to Hugging Face {target}: " + "; ".join(why) + " (export to vitlab or timm)")


def _tower_common(cfg: ViTConfig) -> dict[str, Any]:
    """config.json entries the image towers share."""
    h, w = cfg.img_size
    if h != w:
        raise ValueError(f"transformers' image towers take square images; img_size is {h}x{w}")
    return {"hidden_size": cfg.embed_dim, "num_hidden_layers": cfg.depth, "num_attention_heads": cfg.num_heads,
            "num_channels": cfg.in_chans, "image_size": h, "patch_size": cfg.patch_size,
            "layer_norm_eps": cfg.norm_eps, "hidden_act": ACT_TO_HF.get(cfg.act, "silu")}


def _layers(own: dict[str, Tensor], depth: int, prefix: str, names: dict[str, str], qkv: tuple[str, ...]) -> dict[str, Tensor]:
    """Per-block tensors under HF names: ``names`` maps vitlab sub-modules to HF ones, ``qkv`` names the
    query, key and value projections the fused qkv splits into."""
    out: dict[str, Tensor] = {}
    for i in range(depth):
        b, L = f"blocks.{i}.", f"{prefix}{i}."
        for ours, theirs in names.items():
            for kind in ("weight", "bias", "gamma"):
                if f"{b}{ours}.{kind}" in own:
                    out[f"{L}{theirs}.{'lambda1' if kind == 'gamma' else kind}"] = own[f"{b}{ours}.{kind}"]
        for kind in ("weight", "bias"):
            for name, part in zip(qkv, own[f"{b}attn.qkv.{kind}"].chunk(3, 0)):
                out[f"{L}{name}.{kind}"] = part.contiguous()
    return out


def _with_class_entry(model: VisionTransformer, pos: Tensor) -> Tensor:
    """A position embedding with the class token's entry first, as transformers adds it: zeros for a model
    whose class token has none (no_embed_class; the token itself holds what the entry would add)."""
    if model.num_pos_prefix:
        return pos
    return torch.cat([torch.zeros(1, 1, pos.shape[-1], dtype=pos.dtype), pos], dim=1)


def _patch_bias(model: VisionTransformer, own: dict[str, Tensor]) -> Tensor:
    """The patch projection's bias, zeros for a model without one (the same function)."""
    return own.get("patch_embed.proj.bias", torch.zeros(model.cfg.embed_dim))


def _dinov2_to_hf(model: VisionTransformer) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Dinov2Model, or Dinov2WithRegistersModel with registers; a model without LayerScale has none to write."""
    cfg = model.cfg
    _refuse("Dinov2Model", cfg, {
        "Dinov2ForImageClassification classifies from the class token and the patch mean, vitlab from the class "
        "token: reset_classifier(0) to export the backbone": cfg.num_classes > 0,
        "DINOv2 gives the registers no position embedding: use no_embed_class=True": cfg.reg_tokens and not cfg.no_embed_class,
        "DINOv2 has LayerScale in every block": cfg.init_values is None,
        "DINOv2 has a class token": cfg.classifier != "token",
        "DINOv2 has no pre-encoder norm": cfg.pre_norm})
    own = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    D, pos = cfg.embed_dim, _with_class_entry(model, full_pos_embed(model))
    out = {"embeddings.cls_token": own["cls_token"], "embeddings.mask_token": torch.zeros(1, D),
           "embeddings.position_embeddings": pos,
           "embeddings.patch_embeddings.projection.weight": own["patch_embed.proj.weight"],
           "embeddings.patch_embeddings.projection.bias": _patch_bias(model, own),
           "layernorm.weight": own["norm.weight"], "layernorm.bias": own["norm.bias"]}
    if cfg.reg_tokens:
        out["embeddings.register_tokens"] = own["reg_token"]
    gated = cfg.act == "swiglu"
    mlp = {"mlp.fc1": "mlp.weights_in", "mlp.fc2": "mlp.weights_out"} if gated else {"mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
    out.update(_layers(own, cfg.depth, "encoder.layer.", {
        "norm1": "norm1", "norm2": "norm2", "attn.proj": "attention.output.dense", "ls1": "layer_scale1",
        "ls2": "layer_scale2", **mlp}, ("attention.attention.query", "attention.attention.key", "attention.attention.value")))
    # transformers sizes the MLP by an integer mlp_ratio: hidden = D * ratio, for SwiGLU (int(hidden * 2/3) + 7) // 8 * 8
    ratio = max(1, round(cfg.mlp_dim * 1.5 / D if gated else cfg.mlp_dim / D))
    hidden = D * ratio
    if (((int(hidden * 2 / 3) + 7) // 8 * 8) if gated else hidden) != cfg.mlp_dim:
        raise ValueError(f"mlp_dim={cfg.mlp_dim} is not a width transformers' DINOv2 makes from an integer mlp_ratio")
    regs = cfg.reg_tokens > 0
    config = {"architectures": ["Dinov2WithRegistersModel" if regs else "Dinov2Model"],
              "model_type": "dinov2_with_registers" if regs else "dinov2", **_tower_common(cfg),
              "mlp_ratio": ratio, "use_swiglu_ffn": gated, "layerscale_value": cfg.init_values, "qkv_bias": True,
              "hidden_dropout_prob": cfg.drop_rate, "attention_probs_dropout_prob": cfg.attn_drop_rate,
              "drop_path_rate": 0.0, "apply_layernorm": True, "use_mask_token": True,
              **({"num_register_tokens": cfg.reg_tokens} if regs else {})}
    return config, out


_TOWER_LAYER = {"norm1": "layer_norm1", "norm2": "layer_norm2", "attn.proj": "self_attn.out_proj",
                "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
_TOWER_QKV = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")


def _siglip_to_hf(model: VisionTransformer) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """SiglipVisionModel (its MAP head is the pooler)."""
    cfg = model.cfg
    _refuse("SiglipVisionModel", cfg, {
        "SigLIP's classifier pools by the token mean, not the MAP head: reset_classifier(0)": cfg.num_classes > 0,
        "SigLIP has no registers": cfg.reg_tokens > 0, "SigLIP has no LayerScale": cfg.init_values is not None,
        "SigLIP's MLPs are not gated": cfg.act == "swiglu"})
    own = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    p = "vision_model."
    out = {f"{p}embeddings.patch_embedding.weight": own["patch_embed.proj.weight"],
           f"{p}embeddings.patch_embedding.bias": _patch_bias(model, own),
           f"{p}embeddings.position_embedding.weight": full_pos_embed(model)[0],
           f"{p}post_layernorm.weight": own["norm.weight"], f"{p}post_layernorm.bias": own["norm.bias"],
           f"{p}head.probe": own["attn_pool.latent"]}
    for kind in ("weight", "bias"):
        out[f"{p}head.attention.in_proj_{kind}"] = torch.cat([own[f"attn_pool.q.{kind}"], own[f"attn_pool.kv.{kind}"]])
        for ours, theirs in (("proj", "attention.out_proj"), ("norm", "layernorm"), ("mlp.fc1", "mlp.fc1"),
                             ("mlp.fc2", "mlp.fc2")):
            out[f"{p}head.{theirs}.{kind}"] = own[f"attn_pool.{ours}.{kind}"]
    out.update(_layers(own, cfg.depth, f"{p}encoder.layers.", _TOWER_LAYER, _TOWER_QKV))
    config = {"architectures": ["SiglipVisionModel"], "model_type": "siglip_vision_model", **_tower_common(cfg),
              "intermediate_size": cfg.mlp_dim, "attention_dropout": cfg.attn_drop_rate, "vision_use_head": True}
    return config, out


def _clip_to_hf(model: VisionTransformer) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """CLIPVisionModel, or CLIPVisionModelWithProjection when the model's head is a bias-free projection."""
    cfg = model.cfg
    own = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    _refuse("CLIPVisionModel", cfg, {
        "CLIP's projection has no bias, this head's is non-zero": cfg.num_classes > 0 and bool(own["head.bias"].any()),
        "CLIP's patch projection has no bias, this model's is non-zero": bool(_patch_bias(model, own).any()),
        "CLIP has a class token": cfg.classifier != "token", "CLIP has no registers": cfg.reg_tokens > 0,
        "CLIP has no LayerScale": cfg.init_values is not None, "CLIP's MLPs are not gated": cfg.act == "swiglu"})
    p, D, pos = "vision_model.", cfg.embed_dim, _with_class_entry(model, full_pos_embed(model))
    out = {f"{p}embeddings.class_embedding": own["cls_token"].reshape(D),
           f"{p}embeddings.patch_embedding.weight": own["patch_embed.proj.weight"],
           f"{p}embeddings.position_embedding.weight": pos[0]}
    for kind in ("weight", "bias"):
        out[f"{p}pre_layrnorm.{kind}"] = own[f"norm_pre.{kind}"]
        out[f"{p}post_layernorm.{kind}"] = own[f"norm.{kind}"]
    out.update(_layers(own, cfg.depth, f"{p}encoder.layers.", _TOWER_LAYER, _TOWER_QKV))
    project = cfg.num_classes > 0
    if project:
        out["visual_projection.weight"] = own["head.weight"]
    config = {"architectures": ["CLIPVisionModelWithProjection" if project else "CLIPVisionModel"],
              "model_type": "clip_vision_model", **_tower_common(cfg), "intermediate_size": cfg.mlp_dim,
              "attention_dropout": cfg.attn_drop_rate, **({"projection_dim": cfg.num_classes} if project else {})}
    return config, out


def _vit_to_hf(model: VisionTransformer) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """A model with a head becomes ViTForImageClassification; one without (num_classes=0) becomes ViTModel,
    its pre_logits the pooler."""
    cfg = model.cfg
    why = []
    if cfg.classifier != "token":
        why.append("HF ViT classifies from the class token only (this model uses 'gap')")
    if cfg.backbone_layers is not None:
        why.append("HF ViT has no ResNet-hybrid stem")
    if cfg.act not in ACT_TO_HF or cfg.act == "quick_gelu":
        why.append(f"no HF ViT activation for act={cfg.act!r}")
    if cfg.qk_norm:
        why.append("HF ViT has no QK-norm")
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
        f"{prefix}embeddings.position_embeddings": _with_class_entry(model, full_pos_embed(model)),
        f"{prefix}embeddings.patch_embeddings.projection.weight": own["patch_embed.proj.weight"],
        f"{prefix}embeddings.patch_embeddings.projection.bias": _patch_bias(model, own),
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


def vision_config(hf: dict[str, Any]) -> dict[str, Any]:
    """The image tower's settings: a full SigLIP / CLIP config.json nests them under ``vision_config``."""
    return hf["vision_config"] if isinstance(hf.get("vision_config"), dict) else hf


def _family(hf: dict[str, Any]) -> str:
    family = FAMILY.get(hf.get("model_type", "vit"))
    if family is None:
        raise ValueError(f"HF model_type={hf.get('model_type')!r} is not one of {tuple(FAMILY)}")
    return family


def activation(hf: dict[str, Any]) -> str:
    """The vitlab ``act`` of an HF config.json (its family's default where it names none)."""
    v = vision_config(hf)
    if v.get("use_swiglu_ffn"):
        return "swiglu"
    act = v.get("hidden_act", _DEFAULTS[_family(hf)]["hidden_act"])
    if act not in ACT_FROM_HF:
        raise ValueError(f"HF hidden_act={act!r} has no vitlab equivalent; supported: {sorted(ACT_FROM_HF)}")
    return ACT_FROM_HF[act]


def infer_config(hf: dict[str, Any], state: dict[str, Tensor], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """ViTConfig fields from an HF config.json and the (vitlab-keyed) weights it came with."""
    family = _family(hf)
    v, default = vision_config(hf), _DEFAULTS[family]
    if not v.get("qkv_bias", True):
        raise ValueError("HF config has qkv_bias=false; vitlab's attention always has q/k/v biases")
    patch = v.get("patch_size", 16)
    if isinstance(patch, (list, tuple)):
        if patch[0] != patch[1]:
            raise ValueError(f"non-square patches {patch} are not supported")
        patch = patch[0]
    num_classes = int(state["head.weight"].shape[0]) if "head.weight" in state else 0
    depth = v["num_hidden_layers"]
    cfg: dict[str, Any] = dict(
        img_size=v.get("image_size", 224), patch_size=int(patch), in_chans=v.get("num_channels", 3),
        embed_dim=v["hidden_size"], depth=depth, num_heads=v["num_attention_heads"],
        # DINOv2 configs give mlp_ratio, not intermediate_size: the weights say it (fc2's input width)
        mlp_dim=int(state["blocks.0.mlp.fc2.weight"].shape[1]) if depth else v["intermediate_size"],
        act=activation(hf),
        norm_eps=v.get("layer_norm_eps", default["layer_norm_eps"]),
        drop_rate=v.get("hidden_dropout_prob", 0.0), attn_drop_rate=v.get("attention_probs_dropout_prob", 0.0),
        num_classes=num_classes, classifier="token",
        representation_size=int(state["pre_logits.fc.weight"].shape[0]) if "pre_logits.fc.weight" in state else None,
    )
    if family != "vit":  # transformers resamples these towers' position embeddings bicubic (antialiased: with registers)
        cfg.update(mean=default["mean"], std=default["std"], eval_interpolation="bicubic",
                   pos_resample="bicubic_aa" if hf.get("model_type") == "dinov2_with_registers" else "bicubic")
    if family == "dinov2":
        reg = int(v.get("num_register_tokens", 0))
        cfg.update(init_values=float(v.get("layerscale_value", 1.0)), reg_tokens=reg, no_embed_class=reg > 0)
    elif family == "siglip":
        cfg["classifier"] = "map" if v.get("vision_use_head", True) else "gap"
    elif family == "clip":
        cfg.update(pre_norm=True, patch_bias=False)
    labels = [hf.get("id2label", {}).get(str(i)) for i in range(num_classes)]
    if num_classes and all(labels) and labels != [f"LABEL_{i}" for i in range(num_classes)]:
        cfg["class_names"] = tuple(labels)
    pre = (extra or {}).get("preprocessor", {})
    if "image_mean" in pre and "image_std" in pre:
        cfg["mean"], cfg["std"] = tuple(pre["image_mean"]), tuple(pre["image_std"])
    cfg.update(_preprocess_fields(pre))
    return cfg
