"""Launch the 2-process CPU torchrun training run many times and count the launches that fail.

A process that dies at exit (e.g. ``terminate called without an active exception``, SIGABRT, exit -6)
shows up only now and then, more often when the cores are busy; one launch proves nothing. This runs the
same tiny ``vitlab train`` (digits, a 2-block ViT, a few dozen steps) under ``torch.distributed.run``
``--launches`` times in a row, optionally with ``--load N`` busy-looping processes started beside it,
and prints one line per launch and the failure count. Any non-zero exit is a failure; its stderr tail
is printed. Run from the repository root:

    PYTHONPATH=$PWD/src python3 benchmarks/stress_torchrun.py --launches 30
    PYTHONPATH=$PWD/src python3 benchmarks/stress_torchrun.py --launches 30 --load 4   # cores kept busy
    PYTHONPATH=$PWD/src python3 benchmarks/stress_torchrun.py --launches 10 --strategy fsdp   # sharded (FSDP2)
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vitlab.weights.runs import FINAL_FILE

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "data.dataset=digits", "data.train_limit=256", "data.batch_size=32", "data.normalize=minus1_1",
    "data.eval_batch_size=512", "data.dev_fraction=0.1", "model.name=vit_mnist", "model.img_size=8",
    "model.patch_size=2", "model.in_chans=1", "model.embed_dim=32", "model.depth=2", "model.num_heads=2",
    "model.mlp_dim=64", "train.threads=1", "train.log_every_steps=1", "schedule.epochs=2",
]


def _spin() -> None:
    """Keep one core busy until killed."""
    x = 0
    while True:
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF


def launch(out: Path, timeout: float, src: Path, gdb: bool, strategy: str = "ddp") -> tuple[int, str, float]:
    """One 2-process run into ``out``: (exit code, output, seconds). With ``gdb`` each worker runs under
    gdb, which prints every thread's stack when the worker gets a fatal signal (then exit code -6)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(src))
    worker = ["-m", "vitlab", "train", "--out", str(out), "--no-progress", *TINY, f"train.strategy={strategy}"]
    if gdb:
        worker = ["--no-python", "gdb", "-q", "-batch", "-ex", "run", "-ex", "thread apply all bt 40",
                  "--args", sys.executable, *worker]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *worker]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        out_text = p.stdout + p.stderr
        rc = -6 if gdb and "received signal" in out_text else p.returncode
        return rc, out_text, time.perf_counter() - t0
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        return -999, err + f"\n(timed out after {timeout:.0f} s)", time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--launches", type=int, default=30)
    ap.add_argument("--load", type=int, default=0, help="busy-looping processes kept running beside the launches")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds before a launch counts as hung")
    ap.add_argument("--src", type=Path, default=ROOT / "src", help="the vitlab source tree to launch (PYTHONPATH)")
    ap.add_argument("--gdb", action="store_true", help="run each worker under gdb: thread stacks of a crash")
    ap.add_argument("--full-output", action="store_true", help="print the whole output of a failed launch")
    ap.add_argument("--strategy", choices=("ddp", "fsdp"), default="ddp", help="train.strategy of the launches")
    args = ap.parse_args()
    spinners = [mp.Process(target=_spin, daemon=True) for _ in range(args.load)]
    for s in spinners:
        s.start()
    failures = 0
    print(f"{args.launches} launches of 2-process torchrun training ({args.strategy}), {args.load} busy process(es) beside, "
          f"{os.cpu_count()} cores, load average before: {os.getloadavg()[0]:.2f}", flush=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(args.launches):
                rc, err, dt = launch(Path(tmp) / f"run{i}", args.timeout, args.src.resolve(), args.gdb, args.strategy)
                ok = rc == 0 and (Path(tmp) / f"run{i}" / FINAL_FILE).is_file()
                failures += not ok
                print(f"launch {i + 1:3d}: exit {rc:4d} {dt:6.1f} s load {os.getloadavg()[0]:5.2f}"
                      f"{'' if ok else '  FAILED'}", flush=True)
                if not ok:
                    lines = err.strip().splitlines()
                    print("  " + "\n  ".join(lines if args.full_output else lines[-15:]), flush=True)
    finally:
        for s in spinners:
            s.kill()
    print(f"failures: {failures} / {args.launches} (busy processes beside: {args.load})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
