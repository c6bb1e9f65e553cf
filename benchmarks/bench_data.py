"""Input-pipeline cost: images/s of the batched transforms on a uint8 batch (default 256x1x28x28).

Compare the ms/batch printed here with a training step's time (benchmarks/bench_peers.py) to see how
much of the CPU the pipeline takes from the model. Medians over rounds; threads as torch's default
unless --threads is given. Run from the repository root:

    python3 benchmarks/bench_data.py
    python3 benchmarks/bench_data.py --batch 256 --size 28 --img-size 28 --channels 1 --threads 1
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from vitlab.data import EvalTransform, Mixup, TrainTransform


def time_it(fn: Callable[[], object], rounds: int, reps: int) -> float:
    """Median seconds per call over `rounds` rounds of `reps` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        times.append((time.perf_counter() - t0) / reps)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--size", type=int, default=28, help="stored image size")
    ap.add_argument("--img-size", type=int, default=28, help="model input size")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.batch, args.channels, args.size, args.size), dtype=torch.uint8, generator=g)
    x = x.to(args.device)
    y = torch.randint(0, 10, (args.batch,), generator=g).to(args.device)
    mix = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=10)
    cases = {
        "eval (resize + normalise)": EvalTransform(args.img_size),
        "train crop+flip": TrainTransform(args.img_size),
        "train crop+flip+RandAugment(2,9)": TrainTransform(args.img_size, randaugment=(2, 9)),
        "train crop+flip+RA(2,9)+erasing 0.25": TrainTransform(args.img_size, randaugment=(2, 9), random_erasing=0.25),
    }
    print(f"batch {tuple(x.shape)} uint8 -> {args.img_size}x{args.img_size}, device {args.device}, "
          f"threads {torch.get_num_threads()}")
    print(f"{'transform':40s} {'ms/batch':>9s} {'images/s':>10s}")
    for name, tf in cases.items():
        s = time_it(lambda tf=tf: tf(x, g), args.rounds, args.reps)
        print(f"{name:40s} {s * 1e3:9.2f} {args.batch / s:10.0f}")
    xf = cases["train crop+flip"](x, g)
    s = time_it(lambda: mix(xf, y, g), args.rounds, args.reps)
    print(f"{'mixup/cutmix + smoothing (float batch)':40s} {s * 1e3:9.2f} {args.batch / s:10.0f}")


if __name__ == "__main__":
    main()
