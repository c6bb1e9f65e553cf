"""Serve-test fixtures: one tiny training run on sklearn's digits (8x8, 10 classes), made once per session."""
from __future__ import annotations

from pathlib import Path

import pytest

TINY = [
    "data.dataset=digits", "data.train_limit=256", "data.batch_size=32", "data.normalize=minus1_1",
    "data.eval_batch_size=512", "model.name=vit_mnist", "model.img_size=8", "model.patch_size=2",
    "model.in_chans=1", "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.mlp_dim=64",
    "train.threads=1", "schedule.steps=16", "optim.lr=3e-3",
]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished run: model/, checkpoints/ (best.pt and step files), config.yaml, final.json."""
    from vitlab.train import load_config, train

    run = tmp_path_factory.mktemp("serve") / "run"
    train(load_config(None, TINY), run, progress=False)
    return run


@pytest.fixture(scope="session")
def explorer(tiny_run):
    from vitlab.serve.app import build_explorer

    return build_explorer(tiny_run, device="cpu")

