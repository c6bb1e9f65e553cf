"""Training and inference speed of vitlab's ViT against timm, Hugging Face and lucidrains' vit-pytorch.

Each peer is built here with the same shape as the vitlab model and exact GELU (the main job's
activation), when its package is installed (`pip install -e ".[bench]"`; transformers comes with the
test extra). Training step = forward + backward + fused AdamW step (what vitlab's trainer runs);
inference = forward under inference_mode at a larger batch. Both in fp32 and, where the CPU has native
bf16 (avx512_bf16 / amx_bf16), under bf16 autocast. Measurements of all implementations are
interleaved round by round, so load from other processes hits them alike; medians are reported, with
images/s, achieved GFLOP/s (analytic matmul FLOPs of the whole encoder, training = 3x forward; vitlab's
classifier skips the last block's work on patch tokens, so its figure is effective), its share of the matmul peak
measured in the same run (fp32 peak for fp32 rows, bf16 peak for bf16 rows), and the ratio to the
fastest eager peer. ``--compile vitlab`` adds vitlab under torch.compile (as ``train.compile`` trains),
``--compile all`` every implementation, with a second ratio against the fastest compiled peer.
Today's backbones (``--case vit_s14_dinov2``, ``vit_b16_siglip_224``, ...) are built in timm with the same
switches (registers, LayerScale, MAP head, pre-norm, ...) and in transformers as their Dinov2Model,
SiglipVisionModel or CLIPVisionModel; these towers have no classifier, so only inference is timed, up to
the pooled features. timm imports torchvision, which the CPU torch of vitlab's own environment cannot
have beside it: run those rows with the peer environment's Python (``bash scripts/setup.sh peers``).
Run from the repository root:

    python3 benchmarks/bench_peers.py                         # the main-job model (configs/fmnist.yaml)
    python3 benchmarks/bench_peers.py --compile all --rounds 5
    python3 benchmarks/bench_peers.py --case vit_s16 --train-batch 8 --infer-batch 8
    PYTHONPATH=src .venv-peers/bin/python benchmarks/bench_peers.py --case vit_s14_dinov2 --img-size 224 --infer-batch 64
    PYTHONPATH=src .venv-peers/bin/python benchmarks/bench_peers.py --case vit_b16_siglip_224 --infer-batch 64
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import fields
from functools import partial
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vitlab.models.registry import get_config
from vitlab.models.vit import ViTConfig, VisionTransformer
from vitlab.train.precision import cpu_bf16_flags


def main_job_config() -> ViTConfig:
    """configs/fmnist.yaml's model section (name + ViTConfig fields), at Fashion-MNIST's 28x28 grey, 10 classes."""
    import yaml

    path = Path(__file__).resolve().parents[1] / "configs" / "fmnist.yaml"
    model = (yaml.safe_load(path.read_text()) or {}).get("model") or {}
    known = {f.name for f in fields(ViTConfig)}
    opts = {k: v for k, v in model.items() if k in known}
    opts.update(img_size=28, in_chans=1, num_classes=10)
    return get_config(model.get("name") or "vit_mnist", **opts)


def flops_per_image(cfg: ViTConfig) -> float:
    """Analytic matmul FLOPs of one forward pass per image (patch embedding, qkv, proj, MLP, attention, head)."""
    D, M, C, P = cfg.embed_dim, cfg.mlp_dim, cfg.in_chans, cfg.patch_size
    patches = (cfg.img_size[0] // P) * (cfg.img_size[1] // P)
    n = patches + (1 if cfg.classifier == "token" else 0) + cfg.reg_tokens
    mlp = (3 if cfg.act == "swiglu" else 2) * D * M  # a gated MLP's fc1 is twice as wide
    fwd = 2 * C * P * P * D * patches
    fwd += cfg.depth * (2 * (4 * D * D + mlp) * n + 4 * n * n * D)
    if cfg.classifier == "map":  # one query: q, proj and MLP on it, k and v over the patches
        fwd += 2 * (2 * D * D + 2 * D * D * patches + 2 * D * M) + 4 * patches * D
    return fwd + 2 * D * cfg.num_classes


# -- the implementations, same shape ------------------------------------------------------------------

def build_vitlab(cfg: ViTConfig) -> nn.Module:
    return VisionTransformer(cfg)


def build_timm(cfg: ViTConfig) -> nn.Module:
    from timm.layers import Mlp, SwiGLUPacked
    from timm.models.vision_transformer import VisionTransformer as TimmViT

    gated = cfg.act == "swiglu"
    act = {"gelu": nn.GELU, "gelu_tanh": "gelu_tanh", "quick_gelu": "quick_gelu", "relu": nn.ReLU, "swiglu": nn.SiLU}
    return TimmViT(img_size=cfg.img_size, patch_size=cfg.patch_size, in_chans=cfg.in_chans, num_classes=cfg.num_classes,
                   embed_dim=cfg.embed_dim, depth=cfg.depth, num_heads=cfg.num_heads,
                   mlp_ratio=(2 if gated else 1) * cfg.mlp_dim / cfg.embed_dim, qkv_bias=True, act_layer=act[cfg.act],
                   norm_layer=partial(nn.LayerNorm, eps=cfg.norm_eps), mlp_layer=SwiGLUPacked if gated else Mlp,
                   class_token=cfg.classifier == "token", fc_norm=False,
                   global_pool={"token": "token", "gap": "avg", "map": "map"}[cfg.classifier],
                   reg_tokens=cfg.reg_tokens, no_embed_class=cfg.no_embed_class, init_values=cfg.init_values,
                   pre_norm=cfg.pre_norm, qk_norm=cfg.qk_norm)


def build_hf(cfg: ViTConfig, attn: str) -> nn.Module:
    from vitlab.weights.hf import family

    if family(cfg) != "vit":
        return build_hf_tower(cfg, attn)
    from transformers import ViTConfig as HFConfig, ViTForImageClassification

    hf = HFConfig(hidden_size=cfg.embed_dim, num_hidden_layers=cfg.depth, num_attention_heads=cfg.num_heads,
                  intermediate_size=cfg.mlp_dim, hidden_act="gelu", layer_norm_eps=cfg.norm_eps,
                  image_size=cfg.img_size[0], patch_size=cfg.patch_size, num_channels=cfg.in_chans,
                  num_labels=cfg.num_classes, qkv_bias=True, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    hf._attn_implementation = attn

    class Logits(nn.Module):  # the same call signature as the others
        def __init__(self) -> None:
            super().__init__()
            self.m = ViTForImageClassification(hf)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.m(pixel_values=x).logits

    return Logits()


def build_hf_tower(cfg: ViTConfig, attn: str) -> nn.Module:
    """transformers' Dinov2Model / SiglipVisionModel / CLIPVisionModel of the shape vitlab exports ``cfg`` to."""
    from transformers import AutoConfig, AutoModel

    from vitlab.weights.hf import vitlab_to_hf

    settings, _ = vitlab_to_hf(VisionTransformer(cfg))
    hf = AutoConfig.for_model(**{k: v for k, v in settings.items() if k != "architectures"})
    hf._attn_implementation = attn

    class Pooled(nn.Module):  # the same call signature as the others: image -> pooled features
        def __init__(self) -> None:
            super().__init__()
            self.m = AutoModel.from_config(hf)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.m(pixel_values=x).pooler_output

    return Pooled()


def build_lucidrains(cfg: ViTConfig) -> nn.Module:
    from vit_pytorch import ViT

    if cfg.switches() or cfg.classifier != "token":
        raise ValueError("vit-pytorch has none of today's backbone switches")

    return ViT(image_size=cfg.img_size[0], patch_size=cfg.patch_size, num_classes=cfg.num_classes, dim=cfg.embed_dim,
               depth=cfg.depth, heads=cfg.num_heads, mlp_dim=cfg.mlp_dim, channels=cfg.in_chans,
               dim_head=cfg.embed_dim // cfg.num_heads)


def implementations(cfg: ViTConfig, compile_what: str) -> tuple[dict[str, nn.Module], list[str]]:
    """name -> model for every implementation whose package imports (and "name+compile" for those
    ``compile_what`` names: none, vitlab or all); and notes on those that did not import."""
    builders: dict[str, Callable[[], nn.Module]] = {
        "vitlab": lambda: build_vitlab(cfg),
        "timm": lambda: build_timm(cfg),
        "hf-sdpa": lambda: build_hf(cfg, "sdpa"),
        "hf-eager": lambda: build_hf(cfg, "eager"),
        "lucidrains": lambda: build_lucidrains(cfg),
    }
    # Each (mode, precision) and vitlab's two block variants compile anew: more than dynamo's default
    # recompile limit (8) allows before it silently falls back to eager.
    torch._dynamo.config.recompile_limit = 64
    models, notes = {}, []
    for name, build in builders.items():
        try:
            torch.manual_seed(0)
            models[name] = build()
        except Exception as e:  # a peer that is not installed (or cannot import here) is reported, not fatal
            notes.append(f"{name}: not measured ({type(e).__name__}: {str(e).splitlines()[0][:100]})")
    for name in [n for n in models if compile_what == "all" or n == compile_what]:
        torch.manual_seed(0)
        models[name + "+compile"] = torch.compile(builders[name]())
    return models, notes


# -- timing -------------------------------------------------------------------------------------------

def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool) -> Callable[[], None]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, fused=True)  # as vitlab's trainer
    model.train()

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        loss = F.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def infer_step(model: nn.Module, x: torch.Tensor, bf16: bool) -> Callable[[], None]:
    def step() -> None:
        model.eval()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(x)

    return step


def seconds(fn: Callable[[], None], n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def matmul_peak(dtype: torch.dtype, size: int = 2048, reps: int = 3) -> float:
    """GFLOP/s of a large square matmul in ``dtype``: the ceiling a matmul-bound step can reach here."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    return 2 * size**3 / min(seconds(lambda: a @ b, 1) for _ in range(reps)) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", default="main", help="main (configs/fmnist.yaml's model) or a registered name, e.g. vit_s16")
    ap.add_argument("--img-size", type=int, default=None, help="input size for the case (default: its registered size)")
    ap.add_argument("--train-batch", type=int, default=256)
    ap.add_argument("--infer-batch", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians reported)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per implementation per round")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (0: torch's default)")
    ap.add_argument("--modes", default="train,infer", help="comma list of train, infer")
    ap.add_argument("--precisions", default="fp32,bf16", help="comma list; bf16 only where the CPU has it natively")
    ap.add_argument("--compile", default="none", choices=("none", "vitlab", "all"),
                    help="also these implementations under torch.compile")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = main_job_config() if args.case == "main" else get_config(args.case)
    if args.img_size:
        cfg.img_size = (args.img_size, args.img_size)
    flags = cpu_bf16_flags()
    modes = args.modes.split(",")
    if not cfg.num_classes and "train" in modes:  # an image tower: no classifier to train against
        modes.remove("train")
        print(f"note: {args.case} has no classifier (num_classes=0): inference only")
    precisions = [p for p in args.precisions.split(",") if p == "fp32" or (p == "bf16" and flags)]
    models, notes = implementations(cfg, args.compile)

    gen = torch.Generator().manual_seed(0)
    work: dict[tuple[str, str], dict[str, Callable[[], None]]] = {}  # (mode, precision) -> impl -> step
    batch = {"train": args.train_batch, "infer": args.infer_batch}
    for mode in modes:
        x = torch.randn(batch[mode], cfg.in_chans, *cfg.img_size, generator=gen)
        y = torch.randint(0, max(cfg.num_classes, 1), (batch[mode],), generator=gen)
        for prec in precisions:
            work[(mode, prec)] = {name: train_step(m, x, y, prec == "bf16") if mode == "train"
                                  else infer_step(m, x, prec == "bf16") for name, m in models.items()}
    for steps in work.values():  # warm-up: allocator, oneDNN primitives, optimizer state, compilation
        for name, step in steps.items():
            t = time.perf_counter()
            seconds(step, 2)
            if name.endswith("compile") and time.perf_counter() - t > 10:
                notes.append(f"{name}: {time.perf_counter() - t:.0f} s to compile and warm up (not timed)")
    times = {key: {name: [] for name in steps} for key, steps in work.items()}
    peaks: dict[str, list[float]] = {p: [] for p in precisions}
    for r in range(args.rounds):
        for key, steps in work.items():
            order = list(steps) if r % 2 == 0 else list(reversed(steps))  # alternate to cancel drift
            for name in order:
                times[key][name].append(seconds(steps[name], args.steps))
        for p in precisions:
            peaks[p].append(matmul_peak(torch.float32 if p == "fp32" else torch.bfloat16))
    peak = {p: statistics.median(v) for p, v in peaks.items()}

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {', '.join(flags) or 'no'}, "
          f"{args.rounds} rounds x {args.steps} steps (medians); model {args.case}: {cfg.depth} x {cfg.embed_dim}, "
          f"{cfg.num_heads} heads, MLP {cfg.mlp_dim}, patch {cfg.patch_size}, {cfg.img_size[0]}x{cfg.img_size[1]}x"
          f"{cfg.in_chans}, act {cfg.act}")
    for p in precisions:
        print(f"matmul peak {p} (2048^2): {peak[p]:.0f} GFLOP/s")
    compiled_peers = args.compile == "all"
    print(f"{'mode':<7}{'prec':<6}{'impl':<20}{'batch':>6}{'img/s':>10}{'GFLOP/s':>9}{'% peak':>8}{'vs best peer':>14}"
          + (f"{'vs best compiled peer':>23}" if compiled_peers else ""))
    for (mode, prec), per_impl in times.items():
        sec = {name: statistics.median(v) for name, v in per_impl.items()}
        peers = {name: s for name, s in sec.items() if not name.startswith("vitlab")}
        best = min((s for name, s in peers.items() if not name.endswith("+compile")), default=None)
        best_compiled = min((s for name, s in peers.items() if name.endswith("+compile")), default=None)
        b = batch[mode]
        flops = flops_per_image(cfg) * (3 if mode == "train" else 1) * b
        for name, s in sec.items():
            ratio = f"{best / s:13.2f}x" if best else "             -"
            if compiled_peers:
                ratio += f"{best_compiled / s:22.2f}x" if best_compiled else "                      -"
            gf = flops / s / 1e9
            print(f"{mode:<7}{prec:<6}{name:<20}{b:>6}{b / s:>10.1f}{gf:>9.1f}{100 * gf / peak[prec]:>7.1f}%{ratio}")
    for n in notes:
        print("note:", n)


if __name__ == "__main__":
    main()
