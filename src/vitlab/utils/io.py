"""Atomic file writing: a crash or SIGKILL at any moment leaves the old file or the new one, never a torn one."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def fsync_dir(d: Path) -> None:
    """Make a rename inside ``d`` durable (some filesystems refuse to open directories: then skip)."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(dst: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to fill a hidden temporary file next to ``dst``, fsync it, rename it over ``dst``.

    The temporary name (``.<name>.tmp<pid>``) is unique per process and never matches the final name, so
    readers never see a half-written file and a killed writer's leftovers are recognisable.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(dst.parent)
    return dst
