"""Shared test settings: deterministic seeds and small thread counts (CI has 2 cores); photo-like JPEG folders;
the peer libraries' Python (timm, transformers with torchvision)."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
    yield


def _photo(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth, photo-like RGB image (waves and gradients, a little noise): JPEG-friendly, not flat."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    chans = []
    for _ in range(3):
        a, b, c = rng.uniform(1, 6, 3)
        chans.append(128 + 60 * np.sin(a * xx * 6.28 + b) * np.cos(c * yy * 6.28) + 40 * np.sin(b * (xx + yy) * 3))
    img = np.stack(chans, -1) + rng.normal(0, 3, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _make_folder(root, classes=3, per_class=12, sizes=(20, 40), seed=0):
    """root/class<c>/<i>.jpg: photo-like JPEGs of random sizes (aspect ratios differ), one colour scheme a class."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        d = root / f"class{c}"
        d.mkdir(parents=True)
        for i in range(per_class):
            h, w = (int(v) for v in rng.integers(*sizes, 2))
            img = _photo(h, w, seed * 1000 + c * 100 + i)
            img[..., c % 3] = np.maximum(img[..., c % 3], 200)  # a class cue a tiny model can learn
            Image.fromarray(img).save(d / f"{i:03d}.jpg", quality=90)
    return root


@pytest.fixture
def photo():
    return _photo


@pytest.fixture
def make_folder():
    return _make_folder


PEERS_PYTHON = Path(__file__).resolve().parents[1] / ".venv-peers" / "bin" / "python"


@pytest.fixture(scope="session")
def peer():
    """Runs a script under the peer libraries' Python and returns the JSON object its last stdout line prints.

    timm imports torchvision, and transformers' fast image processors need it; PyPI's torchvision does not
    import beside the CPU torch vitlab is tested with, so the peers live in their own environment
    (`bash scripts/setup.sh peers` makes .venv-peers; VITLAB_PEERS_PYTHON points elsewhere). They exchange
    files with the test (safetensors, .npy, JSON), never Python objects. CI must run them: there a missing
    environment fails instead of skipping.
    """
    python = Path(os.environ.get("VITLAB_PEERS_PYTHON", PEERS_PYTHON))
    if not python.exists():
        reason = f"no peer environment at {python}: run `bash scripts/setup.sh peers`"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)

    def run(script: str | Path, *args: str, timeout: float = 600) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env.update(OMP_NUM_THREADS="2", HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
        cmd = [str(python), *(["-c", script] if "\n" in str(script) else [str(script)]), *map(str, args)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        if p.returncode != 0:
            raise AssertionError(f"peer script failed ({p.returncode}):\n{p.stderr[-4000:]}")
        return json.loads(p.stdout.strip().splitlines()[-1])

    return run
