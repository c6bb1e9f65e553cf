"""Which kernel computes attention: explicit matmul + softmax, or ``scaled_dot_product_attention``.

Both compute the same function (tests/models/test_attention_paths.py); which is faster depends on the
device, dtype, sequence length and on whether a backward pass follows. On one 2-core Xeon with AMX
(torch 2.13), per layer: at 17 tokens in bf16 the SDPA backward took 12x the explicit one, at 50 tokens
5x; in fp32 inference SDPA was 1.3x faster at 17 tokens and 3x at 577; a Zen 4 favoured the explicit
path more. No fixed rule carries over between CPUs, so on a CPU "auto" starts from a rule (explicit up
to RULE_EXPLICIT_MAX_TOKENS keys, SDPA beyond) and, the first time it meets a new (dtype, heads,
queries, keys, head_dim, backward?) with enough work to matter, times both kernels on random tensors of
the call's shape; the other kernel replaces the rule's only when clearly faster. As with cudnn.benchmark,
the choice can differ between machines, and between runs on one machine: the timings are noisy (measured
on a 2-core Zen 4 at the main job's shape: 3 of 8 idle fresh processes picked SDPA, 5 explicit), and the
two kernels round differently, so two runs that chose differently differ in the last bits of their
weights. Set ``Attention.impl`` (vitlab.models.vit) to "explicit" or "sdpa" for bit-identical runs. Small
calls (tests, toy models) keep the rule and are deterministic. CUDA always takes SDPA (flash /
memory-efficient).
"""
from __future__ import annotations

import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

KERNELS = ("auto", "sdpa", "explicit")
PROBE_REPEATS = 3  # timed calls per kernel after one warm-up; the minimum counts
PROBE_MIN_MACS = 4e6  # q @ k^T multiply-adds below which a call keeps the rule (the main job: 9.5e6)
# The probe times a slice of the batch at most this big, so its extra memory and time stay small next to
# the call's (ViT-B/16 at batch 64 has 1.9e9): the kernels' cost per image hardly depends on the batch.
PROBE_MAX_MACS = 1e8
MIN_GAIN = 1.2  # the probe overrides the rule only when the other kernel is this much faster
# Explicit up to this many keys, SDPA beyond: right on both CPUs measured in training at 17 tokens, the
# main job's case; also what runs while torch.compile or the ONNX exporter traces (no timing possible).
RULE_EXPLICIT_MAX_TOKENS = 32

_chosen: dict[tuple, str] = {}


def explicit_attention(q: Tensor, k: Tensor, v: Tensor, scale: float, drop: float = 0.0,
                       training: bool = False) -> tuple[Tensor, Tensor]:
    """Attention output and probabilities (B, heads, queries, keys). Softmax in fp32 even under bf16
    autocast: more exact, and on the CPU faster than in bf16."""
    attn = torch.matmul(q, k.transpose(-2, -1)).mul_(scale).softmax(dim=-1, dtype=torch.float32)
    return torch.matmul(F.dropout(attn, drop, training).to(v.dtype), v), attn


def sdpa_attention(q: Tensor, k: Tensor, v: Tensor, scale: float, drop: float = 0.0) -> Tensor:
    return F.scaled_dot_product_attention(q, k, v, dropout_p=drop, scale=scale)


def choose(kernel: str, q: Tensor, k: Tensor) -> str:
    """"explicit" or "sdpa" for queries ``q`` and keys ``k`` (B, heads, tokens, head_dim)."""
    if kernel not in KERNELS:
        raise ValueError(f"Attention.impl={kernel!r} is not one of {KERNELS}")
    if kernel != "auto":
        return kernel
    if q.device.type != "cpu":
        return "sdpa"
    rule = "explicit" if k.shape[2] <= RULE_EXPLICIT_MAX_TOKENS else "sdpa"
    grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad)
    key = (q.dtype, q.shape[1], q.shape[2], k.shape[2], q.shape[3], grad)
    if key in _chosen:
        return _chosen[key]
    B, H, N, Dh = q.shape
    per_image = H * N * k.shape[2] * Dh
    if B * per_image < PROBE_MIN_MACS or torch.compiler.is_compiling() or torch.jit.is_tracing():
        return rule
    batch = max(1, min(B, int(PROBE_MAX_MACS // per_image)))
    times = probe(torch.Size((batch, H, N, Dh)), k.shape[2], q.dtype, grad)
    other = "sdpa" if rule == "explicit" else "explicit"
    _chosen[key] = other if times[rule] >= MIN_GAIN * times[other] else rule
    return _chosen[key]


def probe(q_shape: torch.Size, keys: int, dtype: torch.dtype, grad: bool) -> dict[str, float]:
    """Seconds per call of each kernel (forward, and backward when ``grad``) on random CPU tensors."""
    B, H, N, Dh = q_shape
    times = {}
    g = torch.Generator().manual_seed(0)  # not the global stream: a probe inside a step must not move its dropout
    with torch.autocast("cpu", enabled=False), torch.set_grad_enabled(grad):
        # Laid out as the model's views of one (B, tokens, 3, heads, head_dim) projection output.
        qkv = torch.randn(B, keys, 3, H, Dh, generator=g, dtype=dtype).requires_grad_(grad)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        q = q[:, :, :N]
        out_grad = torch.randn(B, H, N, Dh, generator=g, dtype=dtype)
        kernels: dict[str, Callable[[], Tensor]] = {
            "explicit": lambda: explicit_attention(q, k, v, Dh**-0.5)[0],
            "sdpa": lambda: sdpa_attention(q, k, v, Dh**-0.5),
        }
        for name, fn in kernels.items():
            best = float("inf")
            for i in range(PROBE_REPEATS + 1):
                t = time.perf_counter()
                out = fn()
                if grad:
                    out.backward(out_grad)
                    qkv.grad = None
                if i:  # the first call warms caches and allocators
                    best = min(best, time.perf_counter() - t)
            times[name] = best
    return times


def chosen() -> dict[tuple, str]:
    """What the probe picked so far: (dtype, heads, queries, keys, head_dim, backward?) -> kernel."""
    return dict(_chosen)


def forget() -> None:
    """Drop the probe's choices (tests; a process that moved to other hardware)."""
    _chosen.clear()
