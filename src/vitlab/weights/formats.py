"""Recognise a checkpoint's format and read it without ever executing code from the file.

Everything is read as plain arrays: safetensors (preferred), ``np.load(allow_pickle=False)`` for .npz,
and ``torch.load(weights_only=True)`` for pickles, whose restricted unpickler refuses any object that
is not a tensor or a plain container. A file that asks for more is refused with an explanation.
"""
from __future__ import annotations

import json
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import CheckpointError
from ..models.pretrained import CONFIG_NAME, FORMAT_TAG, WEIGHTS_NAME
from .runs import MODEL_DIR, is_sharded_checkpoint, is_training_checkpoint, run_of, training_weights
from . import timm
from .sharded import read_sharded

# Format name -> what it is; shown in errors and by `vitlab info`.
FORMATS = {
    "vitlab": "vitlab directory (config.json with \"format\": \"vitlab\" + model.safetensors, from save_pretrained)",
    "vitlab-run": "vitlab training run directory (its model/ sub-directory is a vitlab directory)",
    "vitlab-train": "vitlab training checkpoint (RUN/checkpoints/*.pt, or a sharded *.dcp directory; architecture, "
                    "classes and normalisation from RUN/model)",
    "vitlab-state-dict": "vitlab state dict (.safetensors whose metadata carries the vitlab config)",
    "timm": "timm / bare vitlab state dict (.safetensors, .pth, .pt, .bin; possibly nested under 'state_dict'/'model'), "
            "or a timm hub directory (config.json with pretrained_cfg + model.safetensors)",
    "hf": "Hugging Face ViT directory (config.json with model_type 'vit', or the image towers 'dinov2', "
          "'dinov2_with_registers', 'siglip', 'siglip_vision_model', 'clip', 'clip_vision_model'; + model.safetensors "
          "or pytorch_model.bin)",
    "official": "Google official .npz (flat '/'-separated keys: embedding/kernel, Transformer/encoderblock_N/...)",
}

# Hugging Face model types whose image tower vitlab reads (a full SigLIP / CLIP model: its vision_model).
HF_MODEL_TYPES = ("vit", "dinov2", "dinov2_with_registers", "siglip", "siglip_vision_model", "clip", "clip_vision_model")

CONFIG_METADATA_KEY = "vitlab_config"  # safetensors metadata entry holding a vitlab config as JSON


@dataclass
class Checkpoint:
    """A checkpoint read into memory: raw arrays under the source's own key names, plus what came with them."""

    path: Path
    format: str
    state: dict[str, Any]  # key -> torch.Tensor or np.ndarray, in the source's layout
    config: dict[str, Any] | None = None  # vitlab config fields or the HF config.json, when the format has one
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. HF preprocessor settings


def supported_formats() -> str:
    return "\n".join(f"  - {v}" for v in FORMATS.values())


def _unknown(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"cannot read {path}: {why}. vitlab reads these formats:\n{supported_formats()}")


def read_checkpoint(path: str | os.PathLike, run_dir: str | os.PathLike | None = None) -> Checkpoint:
    """Detect the format of ``path`` (file or directory) and read its arrays safely. ``run_dir``: the run a
    training checkpoint belongs to, when the file does not sit in that run's checkpoints/ folder."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if is_sharded_checkpoint(path):
        return _read_training_checkpoint(path, read_sharded(path), run_dir)
    if path.is_dir():
        return _read_dir(path)
    kind = _sniff(path)
    if kind == "npz":
        return Checkpoint(path, "official", _load_npz(path))
    if kind == "safetensors":
        state, meta = _load_safetensors(path)
        if CONFIG_METADATA_KEY in meta:
            return Checkpoint(path, "vitlab-state-dict", state, config=json.loads(meta[CONFIG_METADATA_KEY]))
    else:
        state = _load_torch(path)
        if is_training_checkpoint(state):
            return _read_training_checkpoint(path, state, run_dir)
    state = unwrap_state_dict(state, path)
    hf_keys = any(".patch_embeddings.projection." in k for k in state)  # a bare Hugging Face state dict
    return Checkpoint(path, "hf" if hf_keys else "timm", state)


def _read_training_checkpoint(path: Path, obj: dict[str, Any], run_dir: str | os.PathLike | None) -> Checkpoint:
    """The weights its evaluation used (EMA when kept), at the image size of its training stage. The
    config (architecture, class names, normalisation, activation) is the run's model/config.json when the
    run has finished; otherwise ``config`` is None and the loader rebuilds it from the recipe in ``extra``."""
    run = run_of(path) or (Path(run_dir) if run_dir is not None else None)
    cfg_file = run / MODEL_DIR / CONFIG_NAME if run is not None else None
    img_size = obj.get("img_size")  # the stage the checkpoint was taken in
    config = None
    if cfg_file is not None and cfg_file.is_file():
        config = {k: v for k, v in json.loads(cfg_file.read_text()).items() if k != "format"}
        config["img_size"] = list(img_size or config["img_size"])
    extra = {"step": int(obj["step"]), "recipe": obj["config"], "img_size": img_size}
    return Checkpoint(path, "vitlab-train", dict(training_weights(obj)), config=config, extra=extra)


def _read_dir(path: Path) -> Checkpoint:
    cfg_file = path / CONFIG_NAME
    if not cfg_file.is_file():
        if (path / MODEL_DIR / CONFIG_NAME).is_file():
            ckpt = _read_dir(path / MODEL_DIR)
            if ckpt.format == "vitlab":
                ckpt.format = "vitlab-run"
            return ckpt
        raise _unknown(path, "a directory without config.json (nor model/config.json)")
    try:
        cfg = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg_file} is not valid JSON ({e})") from None
    if cfg.get("format") == FORMAT_TAG:
        state, _ = _load_safetensors(_need(path, WEIGHTS_NAME))
        cfg = {k: v for k, v in cfg.items() if k != "format"}
        return Checkpoint(path, "vitlab", state, config=cfg)
    if timm.is_hub_config(cfg):  # a timm hub repository: weights + timm's pretrained_cfg
        state = _read_hf_weights(path)
        return Checkpoint(path, "timm", unwrap_state_dict(state, path), extra={"metadata": timm.hub_metadata(cfg)})
    if cfg.get("model_type") in HF_MODEL_TYPES:
        extra = {}
        pre = path / "preprocessor_config.json"
        if pre.is_file():
            extra["preprocessor"] = json.loads(pre.read_text())
        return Checkpoint(path, "hf", _read_hf_weights(path), config=cfg, extra=extra)
    raise _unknown(path, f"{cfg_file} is neither a vitlab config, a Hugging Face config of {HF_MODEL_TYPES} nor a "
                   "timm hub config "
                   f"(model_type={cfg.get('model_type')!r})")


def _read_hf_weights(path: Path) -> dict[str, Any]:
    if (path / "model.safetensors").is_file():
        return _load_safetensors(path / "model.safetensors")[0]
    index = path / "model.safetensors.index.json"
    if index.is_file():  # sharded: the index maps each key to its shard file
        state: dict[str, Any] = {}
        for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
            state.update(_load_safetensors(_need(path, shard))[0])
        return state
    if (path / "pytorch_model.bin").is_file():
        return unwrap_state_dict(_load_torch(path / "pytorch_model.bin"), path)
    raise FileNotFoundError(f"{path} has a config.json but no model.safetensors, "
                            "model.safetensors.index.json or pytorch_model.bin")


def _need(path: Path, name: str) -> Path:
    f = path / name
    if not f.is_file():
        raise FileNotFoundError(f"{f} not found: {path} has config.json but not its weights file {name}")
    return f


def _sniff(path: Path) -> str:
    """'npz', 'safetensors' or 'torch' from the file's first bytes (extensions lie; contents don't)."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK"):  # a zip: numpy's .npz or torch's zip-based pickle format
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except zipfile.BadZipFile as e:
            raise _unknown(path, f"corrupt zip archive ({e})") from None
        if any(n.endswith("data.pkl") for n in names):
            return "torch"
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        raise _unknown(path, "a zip archive that is neither an .npz nor a torch checkpoint")
    if len(head) >= 9 and head[8:9] == b"{":  # safetensors: u64 header length, then a JSON header
        n = int.from_bytes(head[:8], "little")
        if n < os.path.getsize(path):
            return "safetensors"
    if head[:1] == b"\x80":  # pickle protocol marker: torch's legacy (non-zip) format
        return "torch"
    raise _unknown(path, "unrecognised contents (not safetensors, .npz, or a torch checkpoint)")


def _load_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise _unknown(path, f"corrupt safetensors file ({e})") from None


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as e:  # numpy refuses object arrays when allow_pickle=False
        raise CheckpointError(f"refused to load {path}: it holds pickled Python objects ({e}); an official "
                         "checkpoint holds plain numeric arrays only") from None


def _load_torch(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = str(e).strip().splitlines()
        detail = next((line for line in reason if "Unsupported" in line or "global" in line.lower()), reason[0] if reason else "")
        raise CheckpointError(
            f"refused to load {path}: the pickle asks to construct objects other than tensors and plain "
            f"containers ({detail.strip()}). vitlab never runs code from a checkpoint. If you trust the file, "
            "re-save its tensors as .safetensors in an environment you trust."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile) as e:
        raise _unknown(path, f"corrupt torch checkpoint ({e})") from None


_NESTED = ("state_dict", "model", "model_state_dict", "module", "model_ema", "params")


def unwrap_state_dict(obj: Any, path: Path) -> dict[str, Any]:
    """The tensor dict inside a training checkpoint ({'state_dict': ...}, {'model': ...}), without 'module.'."""
    for _ in range(3):
        if isinstance(obj, dict) and not any(isinstance(v, Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _NESTED if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict) or not any(isinstance(v, Tensor) for v in obj.values()):
        raise _unknown(path, "it holds no dict of tensors (looked under " + ", ".join(repr(k) for k in _NESTED) + ")")
    state = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return state
