"""Inference speed of one vitlab ViT on torch eager, ONNX Runtime and OpenVINO (fp32, and bf16 where native).

The model is exported once with vitlab.deploy.export_onnx; each backend then classifies the same
batch, interleaved round by round (medians), on the same number of threads. Prints images/s, the
ratio to torch eager fp32 and the largest logit difference from it. Batches above TORCH_CHUNK also get a
reference row, torch fed TORCH_CHUNK images at a time: torch eager's speed per image falls at big batches
on a CPU (its activations leave the cache; glibc may hand its big buffers back to the system and fault
them in again), so that row shows what a user gets from torch by choosing a smaller batch. With ``--checkpoint`` it also
evaluates that trained model on a dataset's test split (default Fashion-MNIST) with every backend,
so accuracy can be compared where speed is. Needs the onnx and openvino extras
(`pip install -e ".[onnx,openvino]"`); a backend whose package is missing is skipped with a note.
Run from the repository root:

    python3 benchmarks/bench_inference.py                          # main-job model at batch 1 and 1024, ViT-B/16 at 8
    python3 benchmarks/bench_inference.py --cases main:1,main:1024 --checkpoint runs/fmnist
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_peers import main_job_config  # noqa: E402

from vitlab.deploy import export_onnx, open_backend  # noqa: E402
from vitlab.errors import MissingDependencyError  # noqa: E402
from vitlab.models.registry import get_config  # noqa: E402
from vitlab.models.vit import VisionTransformer  # noqa: E402
from vitlab.train.precision import cpu_bf16_flags  # noqa: E402

# (label, backend name, openvino precision)
ENGINES = [("torch", "torch", "fp32"), ("onnxruntime", "onnxruntime", "fp32"), ("openvino fp32", "openvino", "fp32"),
           ("openvino bf16", "openvino", "bf16")]
TORCH_CHUNK = 128


def engines(source, tmp: Path, threads: int) -> tuple[dict[str, object], list[str]]:
    """label -> backend for every engine that can run here, and notes on those that cannot."""
    onnx_path = export_onnx(source, tmp / "model.onnx", check=False).path
    runs, notes = {}, []
    for label, backend, prec in ENGINES:
        if prec == "bf16" and not cpu_bf16_flags():
            notes.append(f"{label}: skipped, this CPU has no native bf16")
            continue
        try:
            runs[label] = open_backend(source if backend == "torch" else onnx_path, backend, threads, precision=prec)
        except MissingDependencyError as e:
            notes.append(f"{label}: skipped, {e}")
    return runs, notes


def seconds(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def speed(case: str, batch: int, rounds: int, threads: int, budget_s: float) -> None:
    cfg = main_job_config() if case == "main" else get_config(case)
    torch.manual_seed(0)
    model = VisionTransformer(cfg).eval()
    torch.nn.init.normal_(model.head.weight, std=0.02)  # random logits, so the differences mean something
    x = np.random.default_rng(0).standard_normal((batch, cfg.in_chans, *cfg.img_size)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        runs, notes = engines(model, Path(tmp), threads)
        if batch > TORCH_CHUNK:
            whole = runs["torch"]
            runs[f"torch {TORCH_CHUNK}-chunk"] = lambda a: np.concatenate(
                [whole(a[i:i + TORCH_CHUNK]) for i in range(0, len(a), TORCH_CHUNK)])
        ref = runs["torch"](x)
        diffs = {k: float(np.abs(r(x) - ref).max()) for k, r in runs.items()}  # also the warm-up
        steps = max(1, int(budget_s / max(seconds(lambda: runs["torch"](x), 1), 1e-4)))
        times: dict[str, list[float]] = {k: [] for k in runs}
        for r in range(rounds):
            for k in (list(runs) if r % 2 == 0 else list(reversed(runs))):
                times[k].append(seconds(lambda: runs[k](x), steps))
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, s in med.items():
        print(f"{case:<8}{batch:>6}  {k:<15}{batch / s:>10.1f}{med['torch'] / s:>9.2f}x{diffs[k]:>12.1e}")
    for n in notes:
        print("note:", n)


def accuracy(ckpt: str, data: str, threads: int) -> None:
    from vitlab.data import EvalTransform, open_dataset
    from vitlab.deploy import BackendModel
    from vitlab.evaluate.metrics import evaluate

    ds = open_dataset(data, "test")
    with tempfile.TemporaryDirectory() as tmp:
        runs, notes = engines(ckpt, Path(tmp), threads)
        for label, run in runs.items():
            cfg = run.cfg
            tf = EvalTransform.for_model(cfg)
            t = time.perf_counter()
            s = evaluate(BackendModel(run), ds.images, ds.labels, tf, 1000, list(ds.classes)).summary()
            print(f"{label:<15} top-1 {s['top1']:6.2f}%  top-5 {s['top5']:6.2f}%  ({s['n']} images, "
                  f"{time.perf_counter() - t:.1f} s)")
    for n in notes:
        print("note:", n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="main:1,main:1024,vit_b16:8",
                    help="comma list of MODEL:BATCH; MODEL is main (configs/fmnist.yaml's model) or a registered name")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=1.0, help="rough time per timed block")
    ap.add_argument("--checkpoint", help="a trained model (run directory, .onnx not needed): also compare top-1")
    ap.add_argument("--data", default="fashion_mnist", help="dataset for --checkpoint (test split)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, native bf16: {', '.join(cpu_bf16_flags()) or 'no'}, "
          f"{args.rounds} interleaved rounds (medians)")
    print(f"{'model':<8}{'batch':>6}  {'engine':<15}{'img/s':>10}{'vs torch':>10}{'max|diff|':>12}")
    for case in args.cases.split(","):
        name, batch = case.split(":")
        speed(name, int(batch), args.rounds, args.threads, args.seconds)
    if args.checkpoint:
        accuracy(args.checkpoint, args.data, args.threads)


if __name__ == "__main__":
    main()
