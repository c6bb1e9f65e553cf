"""Checkpoint files: atomic writes, last-k plus best, torn temp files ignored and cleaned up."""
import pytest
import torch

from vitlab.train.checkpoint import (latest_checkpoint, load_checkpoint, remove_partial, save_checkpoint,
                                     step_checkpoints)


def test_keep_last_k_plus_best_and_ignore_partial_files(tmp_path):
    for step in (1, 2, 3, 4):
        save_checkpoint({"step": step, "w": torch.full((2,), float(step))}, tmp_path, keep_last=2, best=step == 2)
    assert [p.name for p in step_checkpoints(tmp_path)] == ["step_00000003.pt", "step_00000004.pt"]
    assert load_checkpoint(tmp_path / "checkpoints" / "best.pt")["step"] == 2  # survives pruning of step 2
    torn = tmp_path / "checkpoints" / ".step_00000005.pt.tmp999"  # a writer killed mid-write
    torn.write_bytes(b"\x80garbage")
    assert latest_checkpoint(tmp_path).name == "step_00000004.pt"
    assert remove_partial(tmp_path) == [torn] and not torn.exists()
    assert not list((tmp_path / "checkpoints").glob(".*"))  # no temp file left by the successful writes


def test_unreadable_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable vitlab training checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
