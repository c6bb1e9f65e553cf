"""vitlab's own directory format, shaped like Hugging Face's: ``config.json`` + ``model.safetensors``.

The writer and the strict key check live here, below the model classes, so that ``model.save_pretrained``
needs nothing above ``models``; rebuilding a model from a directory is ``registry.from_pretrained``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from ..errors import CheckpointError
from ..utils.io import atomic_write

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_TAG = "vitlab"


def save_pretrained(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write the model's config and weights into directory ``path`` (created if needed). Model families
    other than the ViT add their ``"architecture"`` tag (ResNet classifiers: ``"resnet"``)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    arch = {"architecture": model.cfg.architecture} if model.cfg.architecture else {}
    config = {"format": FORMAT_TAG, **arch, **model.cfg.to_dict()}
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(path / WEIGHTS_NAME, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
    atomic_write(path / CONFIG_NAME, lambda tmp: tmp.write_text(json.dumps(config, indent=2) + "\n"))
    return path


def check_and_load(model: nn.Module, state: dict[str, torch.Tensor], source: str, strict: bool = True) -> dict[str, list[str]]:
    """Load a vitlab-keyed state dict, listing every missing, unexpected or mis-shaped key.

    ``strict=True`` raises on any of them; ``strict=False`` loads what fits and returns the report.
    """
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if tuple(state[k].shape) != tuple(own[k].shape)
    )
    report = {"missing": missing, "unexpected": unexpected, "mismatched": mismatched}
    if strict and (missing or unexpected or mismatched):
        lines = [f"{source} does not fit the model:"]
        for kind, keys in report.items():
            if keys:
                lines.append(f"  {kind} ({len(keys)}): " + ", ".join(keys[:20]) + (" ..." if len(keys) > 20 else ""))
        lines.append("Pass strict=False to load what fits, or build the model the checkpoint was made for.")
        raise CheckpointError("\n".join(lines))
    bad = {m.split(":")[0] for m in mismatched}
    model.load_state_dict({k: v for k, v in state.items() if k in own and k not in bad}, strict=False)
    return report
