"""Training-test fixtures: a tiny model on sklearn's digits (8x8, 10 classes), seconds per run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

TINY = [
    "data.dataset=digits", "data.train_limit=256", "data.batch_size=32", "data.normalize=minus1_1",
    "data.eval_batch_size=512", "model.name=vit_mnist", "model.img_size=8", "model.patch_size=2",
    "model.in_chans=1", "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.mlp_dim=64",
    "train.threads=1", "train.log_every_steps=1",
]
# Randomness wherever it can be, so exactness tests cover augmentation, mixup, dropout and drop-path.
RANDOM = ["data.crop_scale=[0.5,1.0]", "data.mixup_alpha=0.2", "model.drop_path_rate=0.1", "model.drop_rate=0.1",
          "data.label_smoothing=0.1"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny() -> list[str]:
    return list(TINY)


@pytest.fixture
def tiny_random() -> list[str]:
    return TINY + RANDOM


@pytest.fixture(scope="module")
def tiny_random_module() -> list[str]:
    """``tiny_random`` for module-scoped fixtures (a run that several tests share)."""
    return TINY + RANDOM


def _spawner() -> Iterator:
    """Start ``python -m <args>`` from the repository root with one thread; output captured."""
    procs: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
        p = subprocess.Popen([sys.executable, "-m", *args], env=env, cwd=ROOT, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs.append(p)
        return p

    yield start
    for p in procs:  # never leave a child behind if a test fails midway
        if p.poll() is None:
            p.kill()
            p.wait()


spawn = pytest.fixture(_spawner, name="spawn")
spawn_module = pytest.fixture(_spawner, scope="module", name="spawn_module")


@pytest.fixture
def sigkill_at():
    """SIGKILL a spawned training process as soon as ``path`` (a checkpoint) exists; fails if it ends first."""

    def kill(proc: subprocess.Popen, path: Path, timeout: float = 180.0) -> None:
        t0 = time.time()
        while not path.exists():
            assert proc.poll() is None, f"training ended before {path.name} appeared:\n{proc.stderr.read()}"
            assert time.time() - t0 < timeout, f"{path} did not appear"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    return kill
