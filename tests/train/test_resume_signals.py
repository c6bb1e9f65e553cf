"""Interruptions lose nothing: SIGKILL mid-epoch and Ctrl-C, then resume, equal an uninterrupted run."""
import signal
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from vitlab.train import load_config, train
from vitlab.train.checkpoint import step_checkpoints
from vitlab.train.runlog import read_metrics

STEPS = ["schedule.epochs=5", "schedule.warmup_steps=3", "train.ckpt_every_steps=3", "train.ema_decay=0.9"]


def _wait_for(path: Path, proc, timeout: float = 120.0) -> None:
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, f"training ended before {path.name} appeared:\n{proc.stderr.read()}"
        assert time.time() - t0 < timeout, f"{path} did not appear"
        time.sleep(0.02)


def _weights(run: Path) -> dict:
    return load_file(str(run / "model" / "model.safetensors"))


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_sigkill_and_sigint_then_resume_equal_an_uninterrupted_run(tmp_path, tiny_random, spawn):
    args = tiny_random + STEPS
    ref = train(load_config(None, args), tmp_path / "ref", progress=False)  # 5 epochs x 8 steps
    assert ref.step == 40

    # SIGKILL: no chance to clean up; the last atomic checkpoint (step 9: mid-epoch 1) must be enough
    killed = spawn("vitlab", "train", "--out", str(tmp_path / "kill"), "--no-progress", *args)
    _wait_for(tmp_path / "kill" / "checkpoints" / "step_00000009.pt", killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "kill" / "final.json").exists()
    resumed_from = step_checkpoints(tmp_path / "kill")[-1]
    assert resumed_from.name < "step_00000040.pt"
    train(load_config(None, args), tmp_path / "kill", progress=False)
    _assert_same(_weights(tmp_path / "kill"), _weights(tmp_path / "ref"))
    steps = [r["step"] for r in read_metrics(tmp_path / "kill") if "train_loss" in r]
    assert steps == list(range(1, 41))  # each step logged once, the killed process's extra records dropped

    # Ctrl-C: the running step finishes, a checkpoint is saved, the process exits cleanly with 130
    stopped = spawn("vitlab", "train", "--out", str(tmp_path / "int"), "--no-progress", *args)
    _wait_for(tmp_path / "int" / "checkpoints" / "step_00000006.pt", stopped)
    stopped.send_signal(signal.SIGINT)
    out, err = stopped.communicate(timeout=120)
    assert stopped.returncode == 130, err
    assert "Traceback" not in err and "SIGINT at step" in err and "resume" in err
    saved = step_checkpoints(tmp_path / "int")[-1]
    assert saved.name in err and not (tmp_path / "int" / "final.json").exists()
    res = train(load_config(None, args), tmp_path / "int", progress=False)
    assert res.step == 40
    _assert_same(_weights(tmp_path / "int"), _weights(tmp_path / "ref"))
