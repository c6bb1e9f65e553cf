"""Weights in and out: detect a file's format, convert it to vitlab's keys, load it safely."""
from __future__ import annotations

import torch
from torch import nn


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
        raise ValueError("\n".join(lines))
    bad = {m.split(":")[0] for m in mismatched}
    model.load_state_dict({k: v for k, v in state.items() if k in own and k not in bad}, strict=False)
    return report


from .export import convert, export, save_hf, save_npz, save_state_dict, save_timm  # noqa: E402
from .formats import FORMATS, read_checkpoint  # noqa: E402
from .load import describe_checkpoint, load_model, load_weights  # noqa: E402

__all__ = [
    "FORMATS",
    "check_and_load",
    "convert",
    "describe_checkpoint",
    "export",
    "load_model",
    "load_weights",
    "read_checkpoint",
    "save_hf",
    "save_npz",
    "save_state_dict",
    "save_timm",
]
