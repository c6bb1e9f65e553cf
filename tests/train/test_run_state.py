"""TrainState is what a checkpoint holds; the run (train/run.py) adds where it stands; checkpoint.py picks the format."""
from __future__ import annotations

import pytest
import torch

from vitlab.train import load_config, load_checkpoint, train
from vitlab.train import checkpoint
from vitlab.train.distributed import Dist

# The keys of a step checkpoint, as every vitlab version since checkpoints began writes them: resuming an older
# run depends on them.
STATE_KEYS = {"step", "model", "optimizer", "ema", "rng", "best", "pretext", "train_time"}
RUN_KEYS = {"epoch", "step_in_epoch", "total_steps", "world", "config", "img_size", "bf16"}


def test_a_checkpoint_holds_the_state_and_where_the_run_stands(tmp_path, tiny):
    cfg = load_config(None, tiny + ["schedule.steps=4", "train.ckpt_every_steps=2"])
    train(cfg, tmp_path / "run", progress=False)
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "step_00000004.pt")
    assert set(saved) == STATE_KEYS | RUN_KEYS
    assert saved["step"] == 4 and saved["total_steps"] == 4 and saved["img_size"] == [8, 8]
    assert set(saved["rng"]) >= {"torch", "aug"} and saved["config"]["data"]["dataset"] == "digits"


def test_checkpoint_format_follows_the_run_and_names_the_other(tmp_path):
    d = Dist()
    state = {"step": 3, "w": torch.ones(2)}
    path = checkpoint.save(state, tmp_path, keep_last=2, best=True, d=d, sharded=False)
    assert path.name == "step_00000003.pt" and (tmp_path / "checkpoints" / "best.pt").is_file()
    assert torch.equal(checkpoint.load(path, d.device, False, "ddp", lambda meta: {})["w"], state["w"])
    with pytest.raises(ValueError, match="saved under train.strategy=ddp \\(or one process\\) and cannot resume "
                                         "under train.strategy=fsdp here \\(fsdp\\)"):
        checkpoint.load(path, d.device, True, "train.strategy=fsdp here (fsdp)", lambda meta: {})
