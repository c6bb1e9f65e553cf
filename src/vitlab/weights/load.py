"""Checkpoint -> vitlab model: detect the format, convert to vitlab keys, fit to the model, check, load.

    file/dir --read_checkpoint--> raw arrays --<format>_to_vitlab--> vitlab keys --fit--> check_and_load

``fit`` does the two adaptations fine-tuning needs: position embeddings resampled to the model's grid,
and a head (or pre-logits layer) that does not fit replaced by the model's zero-initialised head.
Both are logged on the ``vitlab.weights`` logger and listed in the report's ``notes``.
"""
from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import fields
from typing import Any

from torch import Tensor

from ..data.transforms import get_normalize
from ..errors import CheckpointError, UnknownOptionError
from ..models.pos_embed import resample_axis, resample_pos_embed
from ..models.pretrained import check_and_load
from ..models.registry import get_config, model_from_config
from ..models.resnet import ARCHITECTURE as RESNET, ResNet, ResNetConfig, backbone_stride
from ..models.vit import ViTConfig, VisionTransformer
from ..utils.eval_fields import CONFIG_FIELDS
from ..utils.size import to_2tuple
from . import hf, official, timm
from .catalog import close_names, get_pretrained, is_pretrained_name
from .formats import FORMATS, Checkpoint, read_checkpoint
from .hub import fetch, is_hub_name
from .runs import select_checkpoint

log = logging.getLogger("vitlab.weights")

VITLAB_FORMATS = ("vitlab", "vitlab-run", "vitlab-train", "vitlab-state-dict")


def to_vitlab_state(ckpt: Checkpoint) -> dict[str, Tensor]:
    """The checkpoint's weights under vitlab's key names."""
    if ckpt.format == "official":
        return official.official_to_vitlab(ckpt.state)
    if ckpt.format == "hf":
        return hf.hf_to_vitlab(ckpt.state)
    if ckpt.format == "timm":
        return timm.timm_to_vitlab(ckpt.state)
    return dict(ckpt.state)  # vitlab formats


def _source_grid(ckpt: Checkpoint) -> tuple[int, int] | None:
    """The patch grid the checkpoint was made for, when its config says (needed for non-square grids)."""
    c = ckpt.config or {}
    if ckpt.format in VITLAB_FORMATS and c.get("pos_embed", "learn") == "learn":
        h, w = to_2tuple(c.get("img_size", 224))
        p, scale = c.get("patch_size", 16), 1
        if c.get("backbone_layers") is not None:
            scale = backbone_stride(tuple(c["backbone_layers"]))
        return (h // (p * scale), w // (p * scale))
    c = hf.vision_config(c) if ckpt.format == "hf" else c
    if ckpt.format == "hf" and "patch_size" in c:
        size = c.get("image_size", 224)
        h, w = to_2tuple(size)
        p = c["patch_size"] if isinstance(c["patch_size"], int) else c["patch_size"][0]
        return (h // p, w // p)
    return None


def fit(model: VisionTransformer, state: dict[str, Tensor], method: str, grid: tuple[int, int] | None = None) -> list[str]:
    """Adapt ``state`` in place to ``model`` where fine-tuning expects it; returns what was done."""
    notes: list[str] = []
    prefix = model.num_pos_prefix
    pos = state.get("pos_embed")
    if pos is not None and model.pos_embed is not None and pos.ndim == 3 and pos.shape[-1] == model.pos_embed.shape[-1]:
        n = pos.shape[1] - prefix
        if n != model.grid[0] * model.grid[1] and n > 0:
            src = grid if grid and grid[0] * grid[1] == n else None
            if src is None and math.isqrt(n) ** 2 == n:
                src = (math.isqrt(n),) * 2
            if src is not None:
                state["pos_embed"] = resample_pos_embed(pos, model.grid, src, prefix, method=method)
                notes.append(f"position embeddings resampled from grid {src[0]}x{src[1]} to "
                             f"{model.grid[0]}x{model.grid[1]} ({method} method)")
    for key, axis in (("pos_embed_row", 0), ("pos_embed_col", 1)):
        t = state.get(key)
        if t is not None and getattr(model, key) is not None and t.ndim == 3 and t.shape[1] != model.grid[axis]:
            state[key] = resample_axis(t, model.grid[axis], method=method)
            notes.append(f"{key} resampled from {t.shape[1]} to {model.grid[axis]} entries ({method} method)")
    return notes + fit_head(model, state)


def fit_head(model: VisionTransformer | ResNet, state: dict[str, Tensor]) -> list[str]:
    """Replace, in place, a checkpoint head (and pre-logits layer) that does not fit ``model`` by the model's
    zero-initialised head, as fine-tuning does; returns what was done."""
    own = model.state_dict()
    head = [k for k in state if k.startswith("head.")]
    pre = [k for k in state if k.startswith("pre_logits.")]
    n = model.cfg.num_classes
    if pre and not any(k.startswith("pre_logits.") for k in own):
        drop = head + pre
        why = f"checkpoint's pre-logits layer and head dropped (the model has none); new zero-initialised head with {n} classes"
    elif head and any(k not in own or tuple(own[k].shape) != tuple(state[k].shape) for k in head):
        n_src = state["head.weight"].shape[0] if "head.weight" in state else "?"
        drop, why = head, f"checkpoint's head ({n_src} classes) replaced by a zero-initialised head with {n} classes"
    elif not head and "head.weight" in own:
        drop, why = [], f"checkpoint has no head; the model gets a zero-initialised head with {n} classes"
    else:
        return []
    for k in drop:
        del state[k]
    model.reset_classifier(n)  # reset_classifier's semantics: zero kernel, configured bias
    state.update({k: v for k, v in model.state_dict().items() if k.startswith("head.")})
    return [why]


def load_weights(model: VisionTransformer | ResNet, path: str | os.PathLike, strict: bool = True) -> dict[str, Any]:
    """Load any supported checkpoint (official .npz, timm, Hugging Face, vitlab) into ``model``.

    Position embeddings are resampled to the model's grid (``official`` method for .npz files, the
    model's ``pos_resample`` otherwise) and a head that does not fit is replaced by a zero-initialised
    one. Anything else that does not fit raises, listing the keys; ``strict=False`` loads what fits.
    A ResNet classifier loads vitlab checkpoints only (no other library has its layout).
    Returns ``{"format", "missing", "unexpected", "mismatched", "notes"}``.
    """
    ckpt = open_checkpoint(path)
    if isinstance(model, ResNet):
        if ckpt.format not in VITLAB_FORMATS:
            raise CheckpointError(f"{path} is a {ckpt.format} checkpoint; ResNet classifiers load vitlab checkpoints "
                                  "(save_pretrained directories, vitlab state dicts, training checkpoints) only")
        state = dict(ckpt.state)
        notes = fit_head(model, state)
        return {"format": ckpt.format, **check_and_load(model, state, source=str(path), strict=strict), "notes": notes}
    state = to_vitlab_state(ckpt)
    method = "official" if ckpt.format == "official" else model.cfg.pos_resample
    notes = fit(model, state, method, _source_grid(ckpt))
    expected = {"official": "gelu_tanh", "timm": "gelu"}.get(ckpt.format)
    if ckpt.format == "hf" and ckpt.config:
        expected = hf.activation(ckpt.config)
    if expected and expected != model.cfg.act:
        notes.append(f"{ckpt.format} weights expect act={expected!r} but the model uses act={model.cfg.act!r} "
                     "(outputs will differ slightly; vitlab.load_model sets it from the checkpoint)")
    for n in notes:
        log.warning("%s: %s", ckpt.path, n)
    report = check_and_load(model, state, source=f"{ckpt.path} ({ckpt.format})", strict=strict)
    return {"format": ckpt.format, **report, "notes": notes}



def infer_config(ckpt: Checkpoint, **overrides: Any) -> ViTConfig | ResNetConfig:
    """The architecture a checkpoint was made for, from its config or its shapes; ``overrides`` win.
    vitlab checkpoints of the ResNet baseline (config ``"architecture": "resnet"``) give a ResNetConfig."""
    if ckpt.format in VITLAB_FORMATS and (ckpt.config or {}).get("architecture") == RESNET:
        cfg = {k: v for k, v in ckpt.config.items() if k != "architecture"}
        unknown = sorted(set(overrides) - {f.name for f in fields(ResNetConfig)})
        if unknown:
            raise UnknownOptionError(f"unknown ResNet option(s) {unknown}; valid options: {sorted(f.name for f in fields(ResNetConfig))}")
        return ResNetConfig.from_dict(_with_overrides(cfg, overrides))
    known = {f.name for f in fields(ViTConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UnknownOptionError(f"unknown model option(s) {unknown}; valid options: {sorted(known)}")
    if ckpt.format in VITLAB_FORMATS:
        cfg = dict(ckpt.config or {})
    elif ckpt.format == "official":
        cfg = official.infer_config(ckpt.state)
    elif ckpt.format == "hf" and ckpt.config is not None:
        cfg = hf.infer_config(ckpt.config, to_vitlab_state(ckpt), ckpt.extra)
    else:  # timm, or a bare HF state dict: shapes only
        cfg = timm.infer_config(to_vitlab_state(ckpt), overrides.get("num_heads"), frozenset(overrides))
        if ckpt.format == "hf":
            cfg["norm_eps"] = 1e-12  # HF's default layer_norm_eps
    cfg.update(ckpt.extra.get("metadata", {}))  # what a pretrained name's catalog entry or a hub config says
    return ViTConfig.from_dict(_with_overrides(cfg, overrides))


def _recipe_config(ckpt: Checkpoint) -> dict[str, Any]:
    """The config of a training checkpoint whose run has no model/ yet (unfinished, or the file was moved):
    the recipe's model, normalisation and test-time preprocessing (data.eval_*), the class count of its
    head, the image size of its stage. The class names are not in a checkpoint (model/config.json has
    them), so they are left out."""
    recipe = ckpt.extra["recipe"]
    section = recipe.get("model") or {}
    opts = {k: v for k, v in section.items() if k not in ("name", "weights", "reset_head")}
    head = ckpt.state.get("head.weight")
    opts["num_classes"] = int(head.shape[0]) if head is not None else 0
    if ckpt.extra.get("img_size"):
        opts["img_size"] = tuple(ckpt.extra["img_size"])
    name = section.get("name")
    base = get_config(name, **opts) if name else infer_config(open_checkpoint(section["weights"]), **opts)
    cfg = {**({"architecture": base.architecture} if base.architecture else {}), **base.to_dict(), "class_names": None}
    if isinstance(base, ViTConfig) and "pre_logits.fc.weight" not in ckpt.state:
        cfg["representation_size"] = None  # model.reset_head dropped it
    data = recipe.get("data") or {}
    if data.get("normalize"):
        cfg["mean"], cfg["std"] = get_normalize(data["normalize"])
    cfg.update({k: data[k] for k in CONFIG_FIELDS if data.get(k) is not None})  # the run's test-time preprocessing
    log.warning("%s: no model/config.json in its run (unfinished?): architecture and preprocessing from the "
                "checkpoint's recipe; class names unknown", ckpt.path)
    return cfg


def _with_overrides(cfg: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` updated by ``overrides``; a new class count drops the checkpoint's class names (they
    belong to the head being replaced) unless new names are given too."""
    out = {**cfg, **overrides}
    names = out.get("class_names")
    if "num_classes" in overrides and "class_names" not in overrides and names and len(names) != out["num_classes"]:
        out["class_names"] = None
    return out


def open_checkpoint(path: str | os.PathLike, checkpoint: str | os.PathLike | None = None) -> Checkpoint:
    """``path`` read as it is, or, with ``checkpoint`` (``best``, ``last`` or a file), that training
    checkpoint of run directory ``path``. A training checkpoint of a run without model/ gets its config
    from its recipe. ``path`` may also be a pretrained name (``vitlab pretrained``) or ``hf-hub:ORG/NAME``
    that is not a path on this machine: its file, downloaded once, with the catalog's metadata."""
    if checkpoint is None and not os.path.exists(path):
        if is_hub_name(path):
            ckpt = read_checkpoint(fetch(os.fspath(path)))
            entry = get_pretrained(os.fspath(path)) if is_pretrained_name(path) else None
            if entry is not None and entry.source != "vitlab":  # vitlab's own directories carry their metadata
                ckpt.extra["metadata"] = {**ckpt.extra.get("metadata", {}), **entry.config_fields()}
            return ckpt
        if hint := close_names(os.fspath(path)):
            raise FileNotFoundError(f"{path} is neither a file or directory nor a pretrained name{hint}")
    if checkpoint is None:
        ckpt = read_checkpoint(path)
    else:
        ckpt = read_checkpoint(select_checkpoint(path, checkpoint), run_dir=path)
    if ckpt.format == "vitlab-train" and ckpt.config is None:
        ckpt.config = _recipe_config(ckpt)
    return ckpt


def load_model(path: str | os.PathLike, checkpoint: str | os.PathLike | None = None,
               **overrides: Any) -> VisionTransformer | ResNet:
    """The model a checkpoint was made for, loaded, in eval mode: every command's way in.

    ``path``: a vitlab directory, a training run directory (its model/), a training checkpoint
    (RUN/checkpoints/*.pt), a vitlab, timm or bare HF state dict, an HF directory or an official .npz.
    ``checkpoint``: with a run directory, ``"best"`` (RUN/checkpoints/best.pt), ``"last"`` (the latest
    step checkpoint) or a checkpoint file; a training checkpoint keeps the run's architecture, class
    names, normalisation and activation. ``overrides``: config fields, e.g. ``num_heads=`` for a timm
    file of unregistered width, ``img_size=`` to resample, ``num_classes=`` for a new head."""
    ckpt = open_checkpoint(path, checkpoint)
    model = model_from_config(infer_config(ckpt, **overrides))
    state = to_vitlab_state(ckpt)
    if isinstance(model, ResNet):
        notes = fit_head(model, state)
    else:
        notes = fit(model, state, "official" if ckpt.format == "official" else model.cfg.pos_resample, _source_grid(ckpt))
    for n in notes:
        log.warning("%s: %s", ckpt.path, n)
    check_and_load(model, state, source=f"{ckpt.path} ({ckpt.format})", strict=True)
    return model.eval()


def describe_checkpoint(path: str | os.PathLike, checkpoint: str | os.PathLike | None = None, **overrides: Any) -> str:
    """Human-readable summary for `vitlab info`: format, architecture, parameters, classes, keys."""
    ckpt = open_checkpoint(path, checkpoint)
    cfg = infer_config(ckpt, **overrides)
    n_params = sum(int(math.prod(v.shape)) for v in ckpt.state.values())
    groups: dict[str, int] = {}
    sep = "/" if ckpt.format == "official" else "."
    for k in ckpt.state:
        parts = re.sub(r"\d+", "#", k).split(sep)[:-1] or [k]
        stem = sep.join(parts[: next((i + 1 for i, p in enumerate(parts) if "#" in p), 2)])
        groups[stem] = groups.get(stem, 0) + 1
    h, w = cfg.img_size
    if isinstance(cfg, ResNetConfig):
        arch = f"BiT ResNet classifier, stages {list(cfg.layers)}, width x{cfg.width:g}, image {h}x{w}"
    else:
        arch = (f"depth {cfg.depth}, dim {cfg.embed_dim}, heads {cfg.num_heads}, mlp {cfg.mlp_dim}, "
                f"patch {cfg.patch_size}, image {h}x{w}, classifier {cfg.classifier}, pos_embed {cfg.pos_embed}, "
                f"act {cfg.act}, eps {cfg.norm_eps:g}"
                + (f", pre_logits {cfg.representation_size}" if cfg.representation_size else "")
                + (f", ResNet stages {cfg.backbone_layers} x{cfg.backbone_width}" if cfg.backbone_layers else "")
                + "".join(f", {s}" for s in cfg.switches()))
    lines = [
        f"file:          {ckpt.path}",
        f"format:        {ckpt.format} - {FORMATS[ckpt.format]}",
        f"architecture:  {arch}",
        f"parameters:    {n_params:,}",
        f"classes:       {cfg.num_classes}"
        + (f" ({', '.join(cfg.class_names[:10])}{', ...' if len(cfg.class_names) > 10 else ''})" if cfg.class_names else ""),
        f"input:         mean {tuple(cfg.mean)}, std {tuple(cfg.std)}; test images: resize {cfg.eval_resize}, "
        f"crop_pct {cfg.eval_crop_pct:g}, {cfg.eval_interpolation}",
        f"keys:          {len(ckpt.state)} ("
        + ", ".join(f"{g}: {c}" for g, c in sorted(groups.items())) + ")",
    ]
    return "\n".join(lines)
