"""scripts/gpu_check.py is run by hand on a GPU machine (CI has none): it must at least import, answer --help,
and run its checks' code on the CPU (--dry-run), so a rename does not surface only on the rare GPU day."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.py"
ENV = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")


def test_gpu_check_shows_help():
    p = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=120, env=ENV)
    assert p.returncode == 0, p.stderr
    assert "usage:" in p.stdout and "--dry-run" in p.stdout


def test_gpu_check_dry_run_on_the_cpu():
    checks = ["train-bf16", "fused-adamw", "ddp-nccl", "fsdp-nccl", "cuda-vs-cpu"]  # compile: ~1 min, left out
    p = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--checks", *checks], capture_output=True,
                       text=True, timeout=300, env=ENV)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = [line for line in p.stdout.splitlines() if line[:4] in ("PASS", "FAIL", "SKIP")]
    assert [line.split()[1] for line in lines] == checks
    assert all(not line.startswith("FAIL") for line in lines) and "SKIP cuda-vs-cpu" in p.stdout
