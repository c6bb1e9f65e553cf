"""Training throughput (forward + backward + AdamW step) of vitlab's ViT against Hugging Face's.

Prints images/s, achieved GFLOP/s (analytic matmul FLOPs, training = 3x forward), the fp32 matmul peak
measured in the same run, and the ratio against ``transformers.ViTForImageClassification`` of the same
shape (eager and SDPA attention; the faster one is the peer). Measurements of vitlab and the peers are
interleaved round by round so that load from other processes hits all of them alike; medians are
reported. The vitlab model is the one the main job trains (configs/fmnist.yaml's model section, so
its tanh GELU and drop-path rate too); the peer uses exact GELU as HF's ViT ships. On a machine whose
cores other processes also use, two OpenMP threads can stall on each other: compare with --threads 1.
Run from the repository root:

    python3 benchmarks/bench_train.py                  # default main-job model, batch 256, and ViT-S/16
    python3 benchmarks/bench_train.py --cases default --rounds 7
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from vitlab.models.registry import get_config
from vitlab.models.vit import ViTConfig, VisionTransformer


@dataclass
class Case:
    name: str
    cfg: ViTConfig
    batch: int
    steps: int  # timed steps per round


def default_model_config() -> tuple[str, ViTConfig]:
    """The main job's model: configs/fmnist.yaml's model section (name + ViTConfig fields), else vit_mnist."""
    path = Path(__file__).resolve().parents[1] / "configs" / "fmnist.yaml"
    if not path.exists():
        return "vit_mnist", get_config("vit_mnist")
    import yaml

    model = (yaml.safe_load(path.read_text()) or {}).get("model") or {}
    name = model.get("name") or "vit_mnist"
    known = {f.name for f in fields(ViTConfig)}
    return f"{name} ({path.name})", get_config(name, **{k: v for k, v in model.items() if k in known})


def train_flops_per_image(cfg: ViTConfig) -> float:
    """Analytic matmul FLOPs of one training step per image: 3 x (2 * weights * tokens + attention)."""
    D, M, C, P = cfg.embed_dim, cfg.mlp_dim, cfg.in_chans, cfg.patch_size
    patches = (cfg.img_size[0] // P) * (cfg.img_size[1] // P)
    n = patches + (1 if cfg.classifier == "token" else 0)
    fwd = 2 * C * P * P * D * patches  # patch embedding
    fwd += cfg.depth * (2 * (4 * D * D + 2 * D * M) * n + 4 * n * n * D)  # qkv, proj, mlp; QK^T and AV
    fwd += 2 * D * cfg.num_classes  # head
    return 3.0 * fwd


def hf_model(cfg: ViTConfig, attn: str) -> torch.nn.Module:
    """transformers' ViT with the same shape (exact GELU, as HF's ViT ships)."""
    from transformers import ViTConfig as HFConfig, ViTForImageClassification

    hf = HFConfig(
        hidden_size=cfg.embed_dim,
        num_hidden_layers=cfg.depth,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.mlp_dim,
        hidden_act="gelu",
        layer_norm_eps=cfg.norm_eps,
        image_size=cfg.img_size[0],
        patch_size=cfg.patch_size,
        num_channels=cfg.in_chans,
        num_labels=cfg.num_classes,
        qkv_bias=True,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    hf._attn_implementation = attn
    return ViTForImageClassification(hf)


def make_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, hf: bool) -> Callable[[], None]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    model.train()

    def step() -> None:
        out = model(pixel_values=x).logits if hf else model(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def time_steps(step: Callable[[], None], n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t) / n


def matmul_peak(size: int = 2048, reps: int = 3) -> float:
    """fp32 GFLOP/s of a large square matmul: the ceiling a matmul-bound step can reach on this machine."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(time_steps(lambda: a @ b, 1) for _ in range(reps))
    return 2 * size**3 / best / 1e9


def run_case(case: Case, rounds: int, peers: list[str]) -> tuple[dict[str, float], float]:
    torch.manual_seed(0)
    cfg = case.cfg
    x = torch.randn(case.batch, cfg.in_chans, *cfg.img_size)
    y = torch.randint(0, cfg.num_classes, (case.batch,))
    steps = {"vitlab": make_step(VisionTransformer(cfg), x, y, hf=False)}
    for attn in peers:
        steps[f"hf-{attn}"] = make_step(hf_model(cfg, attn), x, y, hf=True)
    for step in steps.values():  # warm-up: allocator, oneDNN primitive caches, optimizer state
        time_steps(step, 2)
    times: dict[str, list[float]] = {k: [] for k in steps}
    peaks = []
    for r in range(rounds):
        order = list(steps) if r % 2 == 0 else list(reversed(steps))  # alternate to cancel drift
        for k in order:
            times[k].append(time_steps(steps[k], case.steps))
        peaks.append(matmul_peak())
    return {k: statistics.median(v) for k, v in times.items()}, statistics.median(peaks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="default,vit_s16", help="comma list of: default, vit_s16")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved measurement rounds (median reported)")
    ap.add_argument("--steps", type=int, default=0, help="timed steps per round (0: per-case default)")
    ap.add_argument("--batch", type=int, default=0, help="batch size (0: 256 default model, 8 ViT-S/16)")
    ap.add_argument("--peers", default="sdpa,eager", help="HF attention implementations to compare against")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    peers = [p for p in args.peers.split(",") if p]

    cases = []
    for name in args.cases.split(","):
        if name == "default":
            label, cfg = default_model_config()
            cases.append(Case(label, cfg, args.batch or 256, args.steps or 5))
        elif name == "vit_s16":
            cases.append(Case("vit_s16 @224", get_config("vit_s16"), args.batch or 8, args.steps or 2))
        else:
            raise SystemExit(f"unknown case {name!r}; choose from default, vit_s16")

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} rounds (medians)")
    print(f"{'case':<24}{'impl':<12}{'batch':>6}{'img/s':>10}{'GFLOP/s':>10}{'% peak':>8}{'vs peer':>9}")
    for case in cases:
        t, peak = run_case(case, args.rounds, peers)
        flops = train_flops_per_image(case.cfg) * case.batch
        peer = min((v for k, v in t.items() if k != "vitlab"), default=None)
        for k, sec in t.items():
            ratio = f"{peer / sec:8.2f}x" if peer else "       -"
            gflops = flops / sec / 1e9
            print(f"{case.name:<24}{k:<12}{case.batch:>6}{case.batch / sec:>10.1f}{gflops:>10.1f}"
                  f"{100 * gflops / peak:>7.0f}%{ratio:>9}")
        print(f"{case.name:<24}{'matmul peak':<12}{'':>6}{'':>10}{peak:>10.1f}{'100%':>8}", flush=True)


if __name__ == "__main__":
    main()
