"""Training memory per process under train.strategy=ddp vs fsdp, at 1 and 2 processes (CPU, gloo).

For each (strategy, processes) this launches ``torch.distributed.run`` on this script's worker, which builds
the model (default ViT-B/16 at 224 px), wraps it with vitlab's ``Strategy`` exactly as training does, and
runs a few AdamW steps on random images (small batch: activations are not the point). Each process then
reports the bytes of the tensors it holds: parameters, gradients and optimizer state (under fsdp its
shards). Meanwhile the parent polls /proc for the resident memory of the whole launched process tree
(torchrun and its workers) and keeps the peak; each worker also reports its own resident memory after
the steps (after glibc's ``malloc_trim``, so that freed but cached heap does not count). Linux only (/proc,
glibc). Run from the repository root:

    PYTHONPATH=$PWD/src python3 benchmarks/bench_memory.py               # ViT-B/16, 3 steps, batch 2/process
    PYTHONPATH=$PWD/src python3 benchmarks/bench_memory.py --model vit_s16 --steps 2
    PYTHONPATH=$PWD/src python3 benchmarks/bench_memory.py --table   # the computed per-GPU table (README)

Expected: ddp holds 16 bytes a parameter in every process (4 weights + 4 gradients + 8 AdamW moments);
fsdp 16 / processes. RSS adds the interpreter and torch (~0.3-0.5 GB a process), activations, DDP's
gradient buckets, FSDP's all-gathered block and the foreach optimizer's temporaries (fsdp on a CPU uses
the foreach kernels, see train/strategy.py). The peak also counts the whole fp32 model every process
builds before sharding it.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MB = 1 << 20


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc/*/stat parent ids)."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # exited meanwhile
    out, frontier = [], [pid]
    while frontier:
        kids = [c for c, p in parent.items() if p in frontier]
        out += kids
        frontier = kids
    return out


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def measure(strategy: str, procs: int, args: argparse.Namespace) -> tuple[list[dict], int]:
    """Launch one configuration; returns each rank's report and the peak RSS of the process tree (bytes)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs),
           str(Path(__file__).resolve()), "--worker", "--strategy", strategy, "--model", args.model,
           "--img-size", str(args.img_size), "--batch", str(args.batch), "--steps", str(args.steps)]
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // procs)))
    p = subprocess.Popen(cmd, env=env, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = 0
    while p.poll() is None:
        peak = max(peak, sum(_rss(q) for q in [p.pid, *_children(p.pid)]))
        time.sleep(0.05)
    out, err = p.communicate()
    if p.returncode:
        raise SystemExit(f"{strategy} x {procs} failed (exit {p.returncode}):\n{err[-3000:]}")
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")], peak


def worker(args: argparse.Namespace) -> None:
    """One process of a configuration: wrap, train ``--steps`` steps, print its tensor bytes as JSON."""
    import torch
    import torch.nn.functional as F
    from torch.distributed.tensor import DTensor

    from vitlab import create_model
    from vitlab.train import distributed as dd
    from vitlab.train import load_config
    from vitlab.train.optim import build_optimizer
    from vitlab.train.strategy import Strategy, clip_grad_norm

    d = dd.setup("cpu")
    cfg = load_config(None, [f"train.strategy={args.strategy}", f"model.name={args.model}"])
    torch.manual_seed(0)
    model = create_model(args.model, img_size=args.img_size)
    strategy = Strategy(cfg, d, sum(p.numel() for p in model.parameters()), bf16=False)
    strategy.shard(model)
    opt = build_optimizer(model, cfg.optim, fused=strategy.fused_optimizer)
    net = strategy.wrap(model)
    x = torch.randn(args.batch, 3, args.img_size, args.img_size)
    y = torch.randint(0, model.cfg.num_classes, (args.batch,))
    t0 = time.perf_counter()
    for i in range(args.steps):
        with strategy.sync(last=True):
            F.cross_entropy(net(x), y).backward()
        clip_grad_norm(model.parameters(), 1.0)
        opt.step()
        if i < args.steps - 1:  # the last step's gradients stay, to be counted
            opt.zero_grad(set_to_none=True)
    dt = (time.perf_counter() - t0) / args.steps

    def nbytes(t: torch.Tensor) -> int:
        t = t.to_local() if isinstance(t, DTensor) else t
        return t.numel() * t.element_size()

    params = list(model.parameters())
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed heap that glibc keeps cached is not memory in use
    report = {"rank": d.rank, "params": sum(nbytes(p) for p in params),
              "grads": sum(nbytes(p.grad) for p in params if p.grad is not None),
              "optimizer": sum(nbytes(v) for s in opt.state.values() for v in s.values() if torch.is_tensor(v)),
              "n_params": sum(p.numel() for p in params),  # a DTensor's numel is the whole tensor's
              "s_per_step": dt, "kind": strategy.kind, "rss_end": _rss(os.getpid())}
    print(json.dumps(report), flush=True)
    dd.teardown(d, agreed=True)


def per_gpu_table(micro: int = 32, gpus: tuple[int, ...] = (8, 64, 512)) -> str:
    """The README's computed per-GPU memory of ViT-B/L/H and g/G at 224 px, 1000 classes (markdown).

    Training state, fp32 AdamW: 4 bytes a parameter each for weights and gradients, 8 for AdamW's two
    moments; DDP holds all 16P on every GPU, FSDP 16P / N. Activations of a ``micro``-image batch per GPU
    in bf16 with a fused (flash) attention kernel, after Korthikanti et al. 2022 ("Reducing Activation
    Recomputation", 34 s b h bytes a layer at MLP width 4h), generalised to MLP width m: (18 h + 4 m) s b
    bytes a block; with activation checkpointing each block keeps only its input (2 s b h) and one block's
    activations are live while it is recomputed.
    """
    import torch

    from vitlab.models.registry import get_config
    from vitlab.models.vit import VisionTransformer

    def size(b: float) -> str:
        return f"{b / 1024**3:.1f} GiB" if b >= 1024**3 else f"{b / 1024**2:.0f} MiB"

    head = ["model", "params", "DDP state / GPU"] + [f"FSDP state / GPU, {n} GPUs" for n in gpus] + [
        f"activations / GPU, {micro} img, no ckpt", "with activation ckpt"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in ("vit_b16", "vit_l16", "vit_h14", "vit_g14", "vit_G14"):
        cfg = get_config(name)
        with torch.device("meta"):
            n = sum(p.numel() for p in VisionTransformer(cfg).parameters())
        s = (cfg.img_size[0] // cfg.patch_size) * (cfg.img_size[1] // cfg.patch_size) + 1
        h, m, depth = cfg.embed_dim, cfg.mlp_dim, cfg.depth
        block = (18 * h + 4 * m) * s * micro
        rows.append(f"| {name} | {n / 1e6:.0f}M | {size(16 * n)} | " + " | ".join(size(16 * n / g) for g in gpus)
                    + f" | {size(depth * block)} | {size(depth * 2 * s * micro * h + block)} |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="vit_b16")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=2, help="images per process per step")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--strategies", nargs="+", default=["ddp", "fsdp"], choices=["ddp", "fsdp"])
    ap.add_argument("--table", action="store_true", help="print the computed per-GPU table of ViT-B/L/H/g/G and exit")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--strategy", default="ddp", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return 0
    if args.table:
        print(per_gpu_table())
        return 0
    print(f"{args.model} at {args.img_size} px, AdamW fp32, {args.steps} steps x batch {args.batch} per process, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print("| strategy | processes | params MB | grads MB | AdamW state MB | sum MB / process | bytes / param "
          "| RSS after the steps, MB / process | peak RSS, process tree MB | s / step |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for strategy in args.strategies:
        for procs in args.procs:
            reports, peak = measure(strategy, procs, args)
            r = max(reports, key=lambda r: r["params"] + r["grads"] + r["optimizer"])  # the fullest process
            total = r["params"] + r["grads"] + r["optimizer"]
            print(f"| {strategy} | {procs} | {r['params'] / MB:.1f} | {r['grads'] / MB:.1f} | "
                  f"{r['optimizer'] / MB:.1f} | {total / MB:.1f} | {total / r['n_params']:.2f} | "
                  f"{max(x['rss_end'] for x in reports) / MB:.0f} | {peak / MB:.0f} "
                  f"| {max(x['s_per_step'] for x in reports):.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
