"""Every CUDA path vitlab has, in turn, on one GPU: each prints PASS / FAIL / SKIP and a figure. No download.

CI has no GPU, so these paths are otherwise never run. Checks (ViT-B/16 at 224 px, random images):

  train-bf16     bf16-autocast training steps (AdamW): images/s and model FLOPs utilisation (MFU) against
                 the device's dense bf16 peak (PEAK_TFLOPS, looked up by the device's name)
  sdpa-flash     attention forced to the flash kernel (sdpa_kernel([FLASH_ATTENTION])): it runs, and
                 equals the math kernel's output within bf16 tolerance
  compile        torch.compile of the training step: the same loss as eager, and its speed
  fused-adamw    vitlab's optimizer on CUDA is the fused AdamW kernel; ms per step against foreach
  pinned-copy    pinned host memory -> GPU copies (what a data loader's pin_memory feeds): GB/s
  ddp-nccl       DistributedDataParallel over NCCL in a process group of one: loss equals the plain model's
  fsdp-nccl      train.strategy=fsdp (FSDP2, bf16 mixed-precision policy) over NCCL, group of one: loss
                 equals the plain model's within bf16 tolerance, images/s
  fsdp-compile   the same, compiled (what train.compile=auto does on CUDA): loss equals eager FSDP's
  onnx-cuda      ONNX export of the model on CUDA; with onnxruntime, its CPU output against torch's
  cuda-vs-cpu    the same weights and images: CUDA bf16 features against the CPU fp32 ones

Run from the repository root (about 1-2 minutes on an H100; at most 4):

    PYTHONPATH=$PWD/src python3 scripts/gpu_check.py
    PYTHONPATH=$PWD/src python3 scripts/gpu_check.py --dry-run   # no GPU: every check on the CPU, tiny model

Without a GPU and without --dry-run every check prints SKIP. Exit status 1 when any check fails.
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from vitlab import create_model
from vitlab.models.vit import Attention
from vitlab.train import distributed as dd
from vitlab.train import load_config
from vitlab.train.optim import build_optimizer
from vitlab.train.precision import forward_macs
from vitlab.train.strategy import Strategy

# Dense bf16 tensor-core peaks (no sparsity), TFLOP/s, from the vendors' data sheets; first match by name.
PEAK_TFLOPS = [("H200", 989.4), ("H100 PCIe", 756.0), ("H100", 989.4), ("A100", 312.0), ("L40S", 362.1),
               ("A10G", 70.0), ("L4", 121.0)]


CHECKS = ["train-bf16", "sdpa-flash", "compile", "fused-adamw", "pinned-copy", "ddp-nccl", "fsdp-nccl", "fsdp-compile",
          "onnx-cuda", "cuda-vs-cpu"]


class Skip(Exception):
    """A check that does not apply here (no GPU, a missing optional package)."""


def peak_tflops(name: str) -> float | None:
    return next((v for k, v in PEAK_TFLOPS if k in name), None)


def train_flops_per_image(model: torch.nn.Module, x: torch.Tensor) -> float:
    """3 x forward FLOPs (backward ~ 2 x forward): 2 x the Linear/Conv multiply-adds plus attention's
    two (tokens x tokens x width) matmuls in every block."""
    cfg = model.cfg
    tokens = (cfg.img_size[0] // cfg.patch_size) * (cfg.img_size[1] // cfg.patch_size) + 1
    attn = 2 * cfg.depth * tokens * tokens * cfg.embed_dim
    return 3 * 2 * (forward_macs(model, x[:1]) + attn)


class Checker:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.cuda = torch.cuda.is_available()
        self.device = torch.device("cuda" if self.cuda else "cpu")
        self.failures = 0
        small = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, mlp_dim=128, num_classes=10)
        self.kw = small if args.dry_run else {}
        self.batch = 4 if args.dry_run else args.batch
        self.steps = 2 if args.dry_run else args.steps

    def model(self) -> torch.nn.Module:
        torch.manual_seed(0)
        m = create_model(self.args.model, **self.kw)
        torch.nn.init.normal_(m.head.weight, std=0.02)  # a zero head would make every logit comparison trivial
        return m.to(self.device)

    def data(self, model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(1)
        x = torch.randn(self.batch, 3, *model.cfg.img_size, generator=g).to(self.device)
        return x, torch.randint(0, model.cfg.num_classes, (self.batch,), generator=g).to(self.device)

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def steps_per_s(self, step: Callable[[], torch.Tensor], n: int) -> tuple[float, float]:
        """(steps/s over ``n`` timed steps after two warm-up steps, the last loss)."""
        for _ in range(2):
            step()
        self.sync()
        t0 = time.perf_counter()
        for _ in range(n):
            loss = step()
        self.sync()
        return n / (time.perf_counter() - t0), float(loss)

    def train_step(self, net: torch.nn.Module, opt: torch.optim.Optimizer, x, y) -> Callable[[], torch.Tensor]:
        def step() -> torch.Tensor:
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                loss = F.cross_entropy(net(x).float(), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss.detach()
        return step

    def run(self, name: str, check: Callable[[], str]) -> None:
        if not self.cuda and not self.args.dry_run:
            print(f"SKIP {name:12s} no CUDA device (--dry-run runs the checks on the CPU)", flush=True)
            return
        t0 = time.perf_counter()
        try:
            figure, status = check(), "PASS"
        except Skip as e:
            figure, status = str(e), "SKIP"
        except Exception as e:  # a check's failure is reported, and the next check still runs
            figure, status = f"{type(e).__name__}: {e}".splitlines()[0][:300], "FAIL"
            self.failures += 1
            if self.args.verbose:
                traceback.print_exc()
        print(f"{status} {name:12s} {figure}  ({time.perf_counter() - t0:.1f} s)", flush=True)

    # -- the checks -----------------------------------------------------------------------------------
    def train_bf16(self) -> str:
        model = self.model()
        x, y = self.data(model)
        opt = build_optimizer(model, load_config(None, []).optim)
        rate, loss = self.steps_per_s(self.train_step(model, opt, x, y), self.steps)
        assert torch.isfinite(torch.tensor(loss)), f"loss {loss}"
        img_s = rate * self.batch
        peak = peak_tflops(torch.cuda.get_device_name()) if self.cuda else None
        achieved = img_s * train_flops_per_image(model, x) / 1e12
        mfu = f"MFU {100 * achieved / peak:.1f}% of {peak:.0f} TFLOP/s" if peak else \
            "MFU n/a (device not in PEAK_TFLOPS)"
        return f"{img_s:.0f} img/s at batch {self.batch}, {achieved:.1f} TFLOP/s, {mfu}"

    def sdpa_flash(self) -> str:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        if not self.cuda:
            raise Skip("the flash kernel is CUDA-only")
        model, old = self.model().eval(), Attention.impl
        x, _ = self.data(model)
        Attention.impl = "sdpa"
        try:
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):  # raises when flash cannot take these inputs
                    flash = model.forward_features(x).float()
                    self.sync()
                    t0 = time.perf_counter()
                    model.forward_features(x)
                    self.sync()
                    t_flash = time.perf_counter() - t0
                with sdpa_kernel([SDPBackend.MATH]):
                    math = model.forward_features(x).float()
        finally:
            Attention.impl = old
        err = ((flash - math).norm() / math.norm()).item()
        assert err < 2e-2, f"flash vs math relative error {err:.2e}"
        return f"flash kernel ran; forward {1e3 * t_flash:.1f} ms at batch {self.batch}; vs math: rel. error {err:.1e}"

    def compile(self) -> str:
        model = self.model()
        x, y = self.data(model)
        eager = copy.deepcopy(model)
        t0 = time.perf_counter()
        compiled = torch.compile(model)
        opt_c = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: both see the same weights every step
        opt_e = torch.optim.SGD(eager.parameters(), lr=0.0)
        self.train_step(compiled, opt_c, x, y)()  # compiles
        t_compile = time.perf_counter() - t0
        rc, loss_c = self.steps_per_s(self.train_step(compiled, opt_c, x, y), self.steps)
        re, loss_e = self.steps_per_s(self.train_step(eager, opt_e, x, y), self.steps)
        assert abs(loss_c - loss_e) < 2e-2 * max(1.0, abs(loss_e)), f"loss compiled {loss_c} vs eager {loss_e}"
        return (f"compiled in {t_compile:.0f} s; {rc / re:.2f}x eager "
                f"({rc * self.batch:.0f} vs {re * self.batch:.0f} img/s)")

    def fused_adamw(self) -> str:
        model = self.model()
        cfg = load_config(None, []).optim
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        times = {}
        for fused in (True, False):
            opt = build_optimizer(model, cfg, fused=fused)
            assert bool(opt.defaults.get("fused")) == fused, f"fused={opt.defaults.get('fused')}"

            def step(o: torch.optim.Optimizer = opt) -> torch.Tensor:
                o.step()
                return torch.zeros(())

            rate, _ = self.steps_per_s(step, self.steps)
            times[fused] = 1e3 / rate
        return f"fused AdamW {times[True]:.2f} ms/step, foreach {times[False]:.2f} ms/step"

    def pinned_copy(self) -> str:
        if not self.cuda:
            raise Skip("pinned memory needs CUDA")
        host = torch.randint(0, 255, (self.batch * 8, 3, 224, 224), dtype=torch.uint8).pin_memory()
        assert host.is_pinned()
        dev = host.to("cuda", non_blocking=True)
        self.sync()
        t0 = time.perf_counter()
        for _ in range(10):
            dev.copy_(host, non_blocking=True)
        self.sync()
        assert torch.equal(dev.cpu(), host)
        return f"{10 * host.numel() / (time.perf_counter() - t0) / 1e9:.1f} GB/s host->device (uint8 images)"

    def _group(self) -> dd.Dist:
        """A process group of one (NCCL on CUDA, gloo in a dry run), as torchrun would give a single process."""
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if self.cuda else "gloo", store=dist.HashStore(), rank=0, world_size=1)
        return dd.Dist(device=self.device)

    def ddp_nccl(self) -> str:
        from torch.nn.parallel import DistributedDataParallel as DDP

        self._group()
        model = self.model()
        x, y = self.data(model)
        ref = copy.deepcopy(model)
        net = DDP(model, device_ids=[self.device] if self.cuda else None)
        opt, opt_ref = (torch.optim.SGD(m.parameters(), lr=0.1) for m in (model, ref))
        for _ in range(2):
            loss, loss_ref = self.train_step(net, opt, x, y)(), self.train_step(ref, opt_ref, x, y)()
        assert abs(float(loss) - float(loss_ref)) < 1e-3, f"DDP loss {float(loss)} vs plain {float(loss_ref)}"
        rate, _ = self.steps_per_s(self.train_step(net, opt, x, y), self.steps)
        return f"loss after a step {float(loss):.4f} = plain {float(loss_ref):.4f}; {rate * self.batch:.0f} img/s"

    def fsdp_nccl(self) -> str:
        d = self._group()
        model = self.model()
        x, y = self.data(model)
        ref = copy.deepcopy(model)
        strategy = Strategy(load_config(None, ["train.strategy=fsdp"]), d, 0, bf16=self.cuda)
        strategy.shard(model)
        net = strategy.wrap(model)
        opt, opt_ref = (torch.optim.SGD(m.parameters(), lr=0.1) for m in (model, ref))
        for _ in range(2):
            loss, loss_ref = self.train_step(net, opt, x, y)(), self.train_step(ref, opt_ref, x, y)()
        assert abs(float(loss) - float(loss_ref)) < 2e-2 * max(1.0, abs(float(loss_ref))), \
            f"FSDP loss {float(loss)} vs plain {float(loss_ref)}"
        rate, _ = self.steps_per_s(self.train_step(net, opt, x, y), self.steps)
        whole = strategy.gathered(model)  # what evaluation and RUN/model use
        assert torch.equal(whole.head.weight.float(), model.head.weight.full_tensor().float())
        mp = f"params {strategy.mp.param_dtype or 'fp32'}, reduce {strategy.mp.reduce_dtype or 'fp32'}"
        return (f"loss after a step {float(loss):.4f} vs plain {float(loss_ref):.4f} ({mp}); "
                f"{rate * self.batch:.0f} img/s; gathered copy equal")

    def fsdp_compile(self) -> str:
        d = self._group()
        losses, rates = {}, {}
        for compiled in (False, True):
            model = self.model()
            x, y = self.data(model)
            cfg = load_config(None, ["train.strategy=fsdp", f"train.compile={str(compiled).lower()}"])
            strategy = Strategy(cfg, d, 0, bf16=self.cuda)
            strategy.shard(model)
            net = strategy.wrap(model)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            t0 = time.perf_counter()
            losses[compiled] = float(self.train_step(net, opt, x, y)())  # compiles when compiled
            t_first = time.perf_counter() - t0
            rates[compiled], _ = self.steps_per_s(self.train_step(net, opt, x, y), self.steps)
        assert abs(losses[True] - losses[False]) < 2e-2 * max(1.0, abs(losses[False])), f"losses {losses}"
        return (f"first step {t_first:.0f} s (compiling); loss {losses[True]:.4f} vs eager {losses[False]:.4f}; "
                f"{rates[True] / rates[False]:.2f}x eager FSDP")

    def onnx_cuda(self) -> str:
        try:
            import onnx
        except ImportError:
            raise Skip("onnx is not installed (pip install onnx onnxruntime)") from None
        model = self.model().eval()
        x, _ = self.data(model)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "vit.onnx"
            t0 = time.perf_counter()
            with warnings.catch_warnings():  # the tracer's notes on Python-level shape checks
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (x[:2],), str(path), dynamo=False, input_names=["pixel_values"],
                                  output_names=["logits"], dynamic_axes={"pixel_values": {0: "batch"}})
            dt = time.perf_counter() - t0
            onnx.checker.check_model(str(path))
            size = path.stat().st_size / 2**20
            try:
                import onnxruntime as ort
            except ImportError:
                return f"exported in {dt:.1f} s ({size:.0f} MB), checker passed; onnxruntime missing: no comparison"
            out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
                None, {"pixel_values": x[:2].cpu().numpy()})[0]
        with torch.no_grad():
            ref = model(x[:2]).float().cpu()
        diff = (torch.from_numpy(out) - ref).abs().max().item()
        assert diff < 1e-2 * max(1.0, ref.abs().max().item()), f"onnxruntime vs torch CUDA: max diff {diff:.2e}"
        return f"exported in {dt:.1f} s ({size:.0f} MB); onnxruntime CPU vs torch {self.device}: max diff {diff:.1e}"

    def cuda_vs_cpu(self) -> str:
        if not self.cuda:
            raise Skip("needs CUDA to compare with")
        model = self.model().eval()
        x, _ = self.data(model)
        with torch.no_grad():
            cpu = copy.deepcopy(model).cpu().forward_features(x.cpu())
            with torch.autocast("cuda", dtype=torch.bfloat16):
                gpu = model.forward_features(x).float().cpu()
        err = ((gpu - cpu).norm() / cpu.norm()).item()
        assert err < 2e-2, f"relative error {err:.2e} (bf16 tolerance 2e-2)"
        return f"CUDA bf16 vs CPU fp32 features: relative error {err:.1e} (tolerance 2e-2)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="without a GPU: run every check on the CPU, tiny model")
    ap.add_argument("--model", default="vit_b16")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    ap.add_argument("--verbose", action="store_true", help="print a failed check's traceback")
    ap.add_argument("--checks", nargs="+", default=CHECKS, choices=CHECKS, metavar="CHECK",
                    help=f"run only these, in this order (default: all: {' '.join(CHECKS)})")
    args = ap.parse_args()
    c = Checker(args)
    name = torch.cuda.get_device_name() if c.cuda else "no CUDA device"
    dry = " (dry run: tiny model on the CPU)" if args.dry_run else ""
    print(f"torch {torch.__version__}, {name}, {args.model}{dry}")
    t0 = time.perf_counter()
    for label in args.checks:
        c.run(label, getattr(c, label.replace("-", "_")))
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    print(f"{c.failures} failed; {time.perf_counter() - t0:.0f} s in all")
    return 1 if c.failures else 0


if __name__ == "__main__":
    sys.exit(main())
