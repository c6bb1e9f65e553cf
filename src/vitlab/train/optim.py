"""Optimizers, learning-rate schedule and weight averaging for the recipes in configs/.

The paper pretrains with Adam(W) (b1 0.9, b2 0.999, decoupled weight decay, linear warmup then linear
or cosine decay) and fine-tunes with SGD momentum 0.9 (cosine, no weight decay); both clip gradients
at global norm 1. Biases, norms, the class token and position embeddings get no weight decay.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from .config import OptimSection, ScheduleSection


def _layer_id(name: str, depth: int) -> int:
    """0 for the embeddings (the class and register tokens, CLIP's pre-encoder norm included), i + 1 for
    block i (its LayerScale too), depth + 1 for the final norm, an attention-pool head and the head."""
    if name.startswith(("patch_embed", "cls_token", "reg_token", "pos_embed", "norm_pre", "backbone")):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float | None = None) -> list[dict]:
    """Parameter groups: decay / no-decay (1-D params and model.no_weight_decay()), and with
    ``layer_decay`` one lr scale per layer (``lr_scale`` = layer_decay ** (depth + 1 - layer))."""
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    depth = len(getattr(model, "blocks", ()))
    groups: dict[tuple[bool, int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_wd = p.ndim <= 1 or name in skip or name.split(".")[0] in skip
        layer = _layer_id(name, depth) if layer_decay is not None else 0
        scale = layer_decay ** (depth + 1 - layer) if layer_decay is not None else 1.0
        # fsdp: sharded (DTensor) and replicated parameters apart, as the foreach/fused kernels take one kind
        g = groups.setdefault((no_wd, layer, _is_dtensor(p)),
                              {"params": [], "weight_decay": 0.0 if no_wd else weight_decay, "lr_scale": scale})
        g["params"].append(p)
    return list(groups.values())


def build_optimizer(model: nn.Module, cfg: OptimSection, fused: bool = True) -> torch.optim.Optimizer:
    """AdamW / Adam / SGD over ``param_groups``, with the fused kernels where available (and ``fused``),
    else the foreach ones."""
    groups = param_groups(model, cfg.weight_decay, cfg.layer_decay)
    device = next(model.parameters()).device
    fast = {"fused": True} if fused and device.type in ("cuda", "cpu") else {"foreach": True}
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, **fast)
    # The paper's "Adam with decoupled weight decay" is AdamW; plain Adam adds weight decay as L2 to the gradient.
    cls = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    return cls(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, **fast)


def lr_factor(step: int, total: int, warmup: int, cfg: ScheduleSection) -> float:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based): linear warmup from 0, then
    cosine / linear decay to ``min_lr_ratio`` at ``total``, or constant."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if cfg.decay == "constant":
        return 1.0
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    shape = 0.5 * (1.0 + math.cos(math.pi * t)) if cfg.decay == "cosine" else 1.0 - t
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * shape


def cycle_lr(step: int, cycles: list[tuple[int, float, int]], total: int, cfg: ScheduleSection) -> float:
    """Learning rate at ``step`` for a schedule restarted at stage boundaries: ``cycles`` holds
    (start step, peak lr, warmup steps) in order; each cycle warms up and decays to the next start
    (the last one to ``total``), like a fresh fine-tuning run inside the same training run."""
    start, peak, warmup = [c for c in cycles if c[0] <= step][-1]
    end = next((c[0] for c in cycles if c[0] > step), total)
    return peak * lr_factor(step - start, end - start, warmup, cfg)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)


def _is_dtensor(t: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


class ModelEMA:
    """Exponential moving average of a model's parameters and buffers (Polyak averaging).

    The effective decay ramps as min(decay, (1 + n) / (10 + n)) (TensorFlow's num_updates rule), so a
    short run is not dominated by the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        pairs = [(e, c) for e, c in zip(self.module.state_dict().values(), model.state_dict().values())
                 if e.is_floating_point()]
        for sharded in (False, True):  # foreach takes plain tensors or DTensors (fsdp), not a mix
            group = [(e, c) for e, c in pairs if _is_dtensor(e) == sharded]
            if group:
                torch._foreach_lerp_([e for e, _ in group], [c for _, c in group], 1.0 - d)

    def state_dict(self) -> dict:
        return {"updates": self.updates, "decay": self.decay, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        self.module.load_state_dict(state["module"])
