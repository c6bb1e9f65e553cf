"""Which torch device a command or a run uses."""
from __future__ import annotations

import torch


def pick_device(spec: str | torch.device | None = None, local_rank: int = 0) -> torch.device:
    """``None`` or ``"auto"``: this process's GPU when CUDA is available, else the CPU; otherwise the named
    device, refused with a clear message when it is a GPU that this machine does not have."""
    if spec is None or spec == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(spec)!r} asked for, but CUDA is not available; use cpu or auto")
    return dev
