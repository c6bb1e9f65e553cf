"""What transfer costs on a CPU: seconds per 1,000 images for ViT-Ti/16, S/16 and B/16 at 224 and 384 px.

Two columns per case: a forward pass in eval mode (what `vitlab fewshot` and `vitlab predict` spend per
image: feature extraction) and a forward + backward pass with an SGD step in train mode (what fine-tuning
with configs/finetune.yaml spends per image). Models are randomly initialised with the pretrained ones'
shapes (the catalog's vit_ti16 / vit_s16 / vit_b16 weights change no cost). Each case runs a warm-up batch,
then times ``--batches`` batches and reports the median batch, scaled to 1,000 images. Prints the CPU and
the thread count; measure on an otherwise idle machine. From the repository root:

    python3 benchmarks/bench_transfer.py                      # Ti/S/B x 224/384, batch 16, 3 timed batches
    python3 benchmarks/bench_transfer.py --models vit_ti16 --sizes 32 --batch-size 2 --batches 1   # a smoke run
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import cpu_name  # noqa: E402

import vitlab  # noqa: E402


def per_1000(fn, batch: int, batches: int) -> float:
    """Median seconds of ``fn()`` over ``batches`` timed calls (after one warm-up), per 1,000 images."""
    fn()
    times = []
    for _ in range(batches):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000 / batch


def case(name: str, size: int, batch: int, batches: int) -> tuple[float, float]:
    torch.manual_seed(0)
    model = vitlab.create_model(name, img_size=size, num_classes=10)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 10, (batch,))

    model.eval()

    def forward() -> None:
        with torch.inference_mode():
            model.forward_head(model.forward_features(x), pre_logits=True)

    fwd = per_1000(forward, batch, batches)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    return fwd, per_1000(step, batch, batches)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["vit_ti16", "vit_s16", "vit_b16"])
    p.add_argument("--sizes", nargs="+", type=int, default=[224, 384])
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--batches", type=int, default=3, help="timed batches per case (median reported)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads; batch {args.batch_size}, "
          f"median of {args.batches} batches; fp32")
    print(f"{'model':<10} {'px':>4} {'forward s/1k img':>17} {'fwd+bwd+step s/1k img':>22}")
    for name in args.models:
        for size in args.sizes:
            fwd, train = case(name, size, args.batch_size, args.batches)
            print(f"{name:<10} {size:>4} {fwd:>17.1f} {train:>22.1f}", flush=True)


if __name__ == "__main__":
    main()
