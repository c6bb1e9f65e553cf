"""Which arithmetic a run trains in (``train.precision``): bf16 autocast where it pays, fp32 elsewhere.

On CUDA, bf16 autocast is the default (tensor cores). On a CPU it depends on two things: whether
the CPU computes bf16 natively (``avx512_bf16`` or ``amx_bf16`` in /proc/cpuinfo; emulated bf16 is
far slower than fp32), and whether the model is big enough for the faster matmuls to outweigh the
casts autocast adds around them (measured on one such CPU: ViT-S/16 2.6x faster, a 6 x 192 patch-4
28px model 1.6x, the 6 x 128 patch-7 main-job model 0.74x). ``auto`` therefore times a few forward
+ backward steps of the actual model and micro-batch both ways and keeps bf16 only when it is
clearly faster; models too small to gain skip the probe (a measured rule), so small runs, tests
among them, are deterministic.
"""
from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# Below this many multiply-adds per micro-batch forward, bf16 autocast only adds casts on a CPU: on one,
# the main-job model (then ~3.5e9 at batch 256; ~2.9e9 counted now that its last block computes the class
# token alone) lost 26%. The probe runs from here up.
PROBE_MIN_MACS = 2e9
MIN_SPEEDUP = 1.1  # bf16 must win by this much: one probe on a shared machine is noisy


@dataclass(frozen=True)
class Precision:
    bf16: bool
    reason: str

    def __str__(self) -> str:
        return f"{'bf16 autocast' if self.bf16 else 'fp32'} ({self.reason})"


def cpu_bf16_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> list[str]:
    """The native-bf16 instruction-set flags this CPU reports (empty where it has none or no cpuinfo)."""
    try:
        words = set(Path(cpuinfo).read_text().split())
    except OSError:
        return []
    return [f for f in BF16_CPU_FLAGS if f in words]


def forward_macs(model: nn.Module, x: torch.Tensor) -> float:
    """Multiply-adds of one forward pass, counted on the Linear and Conv2d layers (the matmul work)."""
    total = 0.0

    def count(mod: nn.Module, inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, nn.Linear):
            total += out.numel() * mod.in_features
        elif isinstance(mod, nn.Conv2d):
            total += out.numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return total


def bf16_speedup(model: nn.Module, x: torch.Tensor, steps: int = 3) -> float:
    """fp32 time / bf16-autocast time of a forward + backward step on a copy of ``model`` (medians of
    interleaved steps after one warm-up each); the model and the global RNG are left as they were."""
    probe = copy.deepcopy(model).train()
    times: dict[bool, list[float]] = {False: [], True: []}
    with torch.random.fork_rng(devices=[]):
        for i in range(steps + 1):
            for bf16 in (False, True):
                t = time.perf_counter()
                with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
                    out = probe(x)
                out.float().square().mean().backward()
                probe.zero_grad(set_to_none=True)
                if i:  # the first round warms caches and oneDNN primitives
                    times[bf16].append(time.perf_counter() - t)
    return statistics.median(times[False]) / statistics.median(times[True])


def choose_precision(setting: str, model: nn.Module, x: torch.Tensor, cpuinfo: str | Path = "/proc/cpuinfo") -> Precision:
    """Resolve ``train.precision`` for ``model`` trained on micro-batches shaped like ``x``."""
    if setting not in PRECISIONS:
        raise ValueError(f"train.precision={setting!r} is not one of {PRECISIONS}")
    if setting != "auto":
        return Precision(setting == "bf16", "set by train.precision")
    if x.device.type == "cuda":
        return Precision(True, "auto: CUDA")
    if x.device.type != "cpu":
        return Precision(False, f"auto: no bf16 rule for {x.device.type}")
    flags = cpu_bf16_flags(cpuinfo)
    if not flags:
        return Precision(False, f"auto: this CPU has no native bf16 ({' / '.join(BF16_CPU_FLAGS)} not in {cpuinfo})")
    macs = forward_macs(model, x)
    if macs < PROBE_MIN_MACS:
        return Precision(False, f"auto: CPU has {flags[0]}, but {macs / 1e9:.2f} GMAC per micro-batch is too small "
                                f"for bf16 to gain (rule: >= {PROBE_MIN_MACS / 1e9:g})")
    speedup = bf16_speedup(model, x)
    verdict = "faster" if speedup >= MIN_SPEEDUP else f"not faster by {MIN_SPEEDUP}x"
    return Precision(speedup >= MIN_SPEEDUP, f"auto: CPU has {flags[0]}; probe: bf16 step {speedup:.2f}x fp32, {verdict}")



def agreed(p: Precision, d) -> Precision:
    """The same choice in every process of a run (``d``: train.distributed.Dist): probes may differ."""
    from .distributed import all_sum

    votes = int(all_sum(torch.tensor([float(p.bf16)], device=d.device), d).item())
    return p if votes in (0, d.world) else Precision(False, f"{p.reason}; the processes disagreed, so fp32")
