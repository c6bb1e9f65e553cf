"""The README's pretrain -> fine-tune pairs run as documented, a few steps each on tiny data.

Only data and length are overridden (and, for the ViT-B/16 pair, the same narrowing on both sides), so
an architecture or preprocessing mismatch between the two recipes of a pair fails here.
"""
from __future__ import annotations

import json

from vitlab.train import load_config, train

from .conftest import ROOT

SHORT = ["data.dataset=digits", "data.train_limit=200", "data.batch_size=32", "data.accum_steps=1",
         "data.eval_batch_size=512", "schedule.steps=2", "schedule.warmup_steps=1", "train.threads=1"]


def _run(recipe: str, out, overrides: list[str]) -> dict:
    result = train(load_config(ROOT / "configs" / recipe, overrides), out, progress=False)
    assert result.interrupted is None
    return json.loads((out / "final.json").read_text())


def test_masked_pretrain_then_fmnist_finetune(tmp_path):
    # README: vitlab train --config configs/masked_pretrain.yaml --out runs/mpp
    #         vitlab train --config configs/fmnist.yaml --out runs/ft model.weights=runs/mpp/model
    pre = _run("masked_pretrain.yaml", tmp_path / "mpp", SHORT)
    assert pre["objective"] == "masked_patch"
    ft = _run("fmnist.yaml", tmp_path / "ft", SHORT + [f"model.weights={tmp_path / 'mpp' / 'model'}"])
    assert ft["objective"] == "classify" and ft["steps"] == 2


def test_pretrain_then_finetune_at_higher_resolution(tmp_path):
    # README: pretrain.yaml, then finetune.yaml model.weights=<run>/model (new head, higher resolution)
    narrow = ["model.depth=1", "model.embed_dim=64", "model.num_heads=2", "model.mlp_dim=128"]
    pre = _run("pretrain.yaml", tmp_path / "pre", SHORT + narrow + ["model.img_size=32"])
    assert pre["steps"] == 2
    ft = _run("finetune.yaml", tmp_path / "ft",
              SHORT + narrow + ["model.img_size=48", f"model.weights={tmp_path / 'pre' / 'model'}"])
    assert ft["steps"] == 2
    cfg = json.loads((tmp_path / "ft" / "model" / "config.json").read_text())
    assert list(cfg["img_size"]) == [48, 48]
