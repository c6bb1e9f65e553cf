"""torchrun with 2 CPU processes (gloo) reaches the weights, metrics and logged losses of 1 process with the
same global batch."""
import json

import pytest
import torch
from safetensors.torch import load_file

from vitlab.train import load_config, train
from vitlab.train.runlog import read_metrics

# Values that differ between the runs by nature: timing, speed and the process count.
RUN_FIELDS = {"train_time_s", "wall_time_s_this_process", "processes", "img_per_s"}


def assert_close(a, b, where):
    """Equal up to float summation order, through nested lists and dicts (per-class, confusion)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_close(a[k], b[k], (*where, k))
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, (*where, i))
    elif isinstance(a, (int, float)) and not isinstance(a, bool):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6), where
    else:  # strings, booleans, None: exactly equal (pytest.approx refuses strings)
        assert a == b, where


def test_two_processes_equal_one_with_accumulation(tmp_path, tiny_random, spawn):
    args = tiny_random + ["schedule.epochs=2", "schedule.warmup_steps=2", "data.dev_fraction=0.1"]
    # global batch 32 = 2 processes x 16, or 1 process x 2 accumulation steps x 16: the same micro-batches
    p = spawn("torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "vitlab", "train",
              "--out", str(tmp_path / "ddp"), "--no-progress", *args)
    train(load_config(None, args + ["data.accum_steps=2"]), tmp_path / "one", progress=False)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert "2 process(es) x 1 accumulation x 16" in out
    a = load_file(str(tmp_path / "ddp" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "one" / "model" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    assert (tmp_path / "ddp" / "final.json").is_file() and not list((tmp_path / "ddp").glob("*rank*"))

    fa, fb = (json.loads((tmp_path / r / "final.json").read_text()) for r in ("ddp", "one"))
    assert (fa["processes"], fb["processes"]) == (2, 1) and fa.keys() == fb.keys()
    for k in fa.keys() - RUN_FIELDS:  # test top-1/top-5/loss, per-class, confusion, best dev top-1, steps
        assert_close(fa[k], fb[k], ("final.json", k))
    ma, mb = read_metrics(tmp_path / "ddp"), read_metrics(tmp_path / "one")
    assert [r["step"] for r in ma] == [r["step"] for r in mb] and len(ma) > 8
    for ra, rb in zip(ma, mb):  # per-step train loss, grad norm, lr; per-epoch dev top-1/top-5/loss
        assert_close({k: v for k, v in ra.items() if k not in RUN_FIELDS},
                     {k: v for k, v in rb.items() if k not in RUN_FIELDS}, ("metrics.jsonl", ra["step"]))
