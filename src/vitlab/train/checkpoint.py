"""Training checkpoints that lose nothing: written atomically, last-k plus best kept.

A checkpoint is one ``torch.save`` dict (model, optimizer, EMA, RNG states, step, data position,
config). It is written to a temporary file, fsync'ed, then renamed over the final name, and the
directory is fsync'ed, so a crash or SIGKILL at any moment leaves either the old or the new file,
never a torn one. Files are read back with ``weights_only=True`` (plain tensors and containers).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

CKPT_DIR = "checkpoints"
BEST = "best.pt"
_STEP_FILE = re.compile(r"^step_(\d{8,})\.pt$")


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:  # some filesystems do not allow opening directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_save(obj: Any, dst: Path) -> Path:
    """torch.save to ``dst`` via temp file + fsync + rename."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(dst.parent)
    return dst


def step_checkpoints(run_dir: Path) -> list[Path]:
    """The run's step checkpoints, oldest first."""
    d = Path(run_dir) / CKPT_DIR
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _STEP_FILE.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = step_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def save_checkpoint(state: dict[str, Any], run_dir: Path, keep_last: int, best: bool = False) -> Path:
    """Write ``checkpoints/step_<step>.pt``, optionally mark it best, and prune to the last ``keep_last``."""
    d = Path(run_dir) / CKPT_DIR
    path = atomic_save(state, d / f"step_{state['step']:08d}.pt")
    if best:
        tmp = d / f".{BEST}.tmp{os.getpid()}"
        if tmp.exists():
            tmp.unlink()
        os.link(path, tmp)  # same bytes, no second serialisation; survives pruning of step files
        os.replace(tmp, d / BEST)
        _fsync_dir(d)
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
