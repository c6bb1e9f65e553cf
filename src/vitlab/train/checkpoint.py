"""Training checkpoints that lose nothing: written atomically, last-k plus best kept.

A checkpoint is one ``torch.save`` dict (model, optimizer, EMA, RNG states, step, data position,
config). It is written to a temporary file, fsync'ed, then renamed over the final name, and the
directory is fsync'ed, so a crash or SIGKILL at any moment leaves either the old or the new file,
never a torn one. Files are read back with ``weights_only=True`` (plain tensors and containers).
The file names are ``vitlab.weights.runs``' (the loaders read them too).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..utils.io import atomic_write, fsync_dir
from ..weights.runs import BEST, CKPT_DIR, latest_checkpoint, step_checkpoints  # noqa: F401 (re-exported)


def save_checkpoint(state: dict[str, Any], run_dir: Path, keep_last: int, best: bool = False) -> Path:
    """Write ``checkpoints/step_<step>.pt``, optionally mark it best, and prune to the last ``keep_last``."""
    d = Path(run_dir) / CKPT_DIR
    path = atomic_write(d / f"step_{state['step']:08d}.pt", lambda tmp: torch.save(state, tmp))
    if best:
        tmp = d / f".{BEST}.tmp{os.getpid()}"
        if tmp.exists():
            tmp.unlink()
        os.link(path, tmp)  # same bytes, no second serialisation; survives pruning of step files
        os.replace(tmp, d / BEST)
        fsync_dir(d)
    for old in step_checkpoints(run_dir)[:-keep_last]:
        old.unlink()
    return path


def remove_partial(run_dir: Path) -> list[Path]:
    """Delete temporary files a killed writer left behind (never a finished checkpoint)."""
    d = Path(run_dir) / CKPT_DIR
    stale = [p for p in d.glob(".*.tmp*") if p.is_file()] if d.is_dir() else []
    for p in stale:
        p.unlink()
    return stale


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a foreign or damaged file: say what it is, not a pickle traceback
        raise ValueError(f"{path} is not a readable vitlab training checkpoint ({type(e).__name__}: {e})") from None
