"""train.strategy=fsdp: 2 CPU processes (gloo, FSDP2) compute what 1 process computes, checkpoints are sharded
(torch.distributed.checkpoint) and resume on the same or another process count, and the run's outputs load
like any other run's."""
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vitlab
from vitlab.errors import CheckpointError
from vitlab.train import load_config, train
from vitlab.train.runlog import read_metrics
from vitlab.weights.runs import BEST_SHARDED, step_checkpoints
from vitlab.weights.sharded import read_sharded

ROOT = Path(__file__).resolve().parents[2]
# 2 epochs x 7 steps with every randomness on (crop, mixup, dropout, drop-path, smoothing), EMA, layer decay
STEPS = ["schedule.epochs=2", "schedule.warmup_steps=2", "data.dev_fraction=0.1", "train.ema_decay=0.9",
         "optim.layer_decay=0.75", "train.ckpt_every_steps=3", "train.keep_last=10", "train.strategy=fsdp"]
TORCHRUN = ("torch.distributed.run", "--standalone", "--nproc_per_node")
RUN_FIELDS = {"train_time_s", "wall_time_s_this_process", "processes", "img_per_s"}  # differ by nature


@pytest.fixture(scope="module")
def two(tmp_path_factory, tiny_random_module, spawn_module) -> Path:
    """A 2-process fsdp run, every 3rd step checkpointed (step_3, 6, 7, 9, 12, 14)."""
    out = tmp_path_factory.mktemp("fsdp") / "two"
    p = spawn_module(*TORCHRUN, "2", "-m", "vitlab", "train", "--out", str(out), "--no-progress",
                     *tiny_random_module, *STEPS)
    stdout, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    assert "2 process(es) x 1 accumulation x 16" in stdout and "fsdp" in stdout
    return out


def _close(a: dict, b: dict, atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=k)


def _weights(run: Path) -> dict:
    return load_file(str(run / "model" / "model.safetensors"))


def test_two_processes_equal_one_with_accumulation(two, tmp_path, tiny_random):
    one = tmp_path / "one"
    train(load_config(None, tiny_random + STEPS + ["data.accum_steps=2"]), one, progress=False)
    _close(_weights(two), _weights(one))  # model/ holds the EMA weights
    last = step_checkpoints(two)[-1].name
    _close(read_sharded(two / "checkpoints" / last)["model"], read_sharded(one / "checkpoints" / last)["model"])
    # Each step's loss and pre-clipping gradient norm: gradients summed over processes instead of averaged
    # would double every norm (Adam and clipping would hide it in the weights).
    ma, mb = read_metrics(two), read_metrics(one)
    assert [r["step"] for r in ma] == [r["step"] for r in mb] and len(ma) > 8
    for ra, rb in zip(ma, mb):
        for k in ra.keys() - RUN_FIELDS:
            assert ra[k] == pytest.approx(rb[k], rel=1e-6, abs=1e-7), (ra["step"], k)
    fa, fb = (json.loads((r / "final.json").read_text()) for r in (two, one))
    assert (fa["processes"], fb["processes"], fa["top1"], fa["confusion"]) == (2, 1, fb["top1"], fb["confusion"])


def test_gradients_equal_one_unsharded_process(spawn):
    """The gradients themselves, accumulated and clipped, against an unsharded model in the same process:
    a sum instead of a mean over processes (pytorch/pytorch#162338) is off by a factor of 2."""
    p = spawn(*TORCHRUN, "2", str(ROOT / "tests" / "train" / "fsdp_grads_worker.py"))
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    r = json.loads(out.strip().splitlines()[-1])
    assert r["zero_grads"] == [], r  # every parameter, replicated or sharded, is checked with a real gradient
    assert r["norm"] == pytest.approx(r["ref_norm"], rel=1e-6) and r["ref_norm"] > 0.5  # so clipping acts
    assert r["grad_max_diff"] < 1e-6 and r["clipped_max_diff"] < 1e-6, r


def _resume_from(two: Path, step: int, dst: Path) -> Path:
    """A run directory holding only ``two``'s checkpoint at ``step`` (as if it had stopped there)."""
    name = f"step_{step:08d}.dcp"
    shutil.copytree(two / "checkpoints" / name, dst / "checkpoints" / name)
    return dst


def test_resume_on_the_same_and_another_process_count(two, tmp_path, tiny_random, spawn):
    same = _resume_from(two, 6, tmp_path / "same")
    (same / "checkpoints" / ".step_00000009.dcp.tmp").mkdir()  # what a save killed midway leaves behind
    (same / "checkpoints" / ".step_00000009.dcp.tmp" / "__0_0.distcp").write_bytes(b"torn")
    p = spawn(*TORCHRUN, "2", "-m", "vitlab", "train", "--out", str(same), "--no-progress", *tiny_random, *STEPS)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    assert "resuming from" in out and "step_00000006.dcp at step 6" in out
    assert not (same / "checkpoints" / ".step_00000009.dcp.tmp").exists()
    _close(_weights(same), _weights(two), atol=0)  # exact: same shards, same arithmetic

    # 1 process from the 2-process shards (DCP reshards). Tolerance 1e-6: the gradient reduction's summation
    # order differs between process counts (equal here in practice, but not guaranteed).
    other = _resume_from(two, 6, tmp_path / "other")
    res = train(load_config(None, tiny_random + STEPS + ["data.accum_steps=2"]), other, progress=False)
    assert res.step == 14
    _close(_weights(other), _weights(two))


def test_a_checkpoint_missing_a_shard_is_refused_by_name(two, tmp_path, tiny_random):
    broken = _resume_from(two, 6, tmp_path / "broken")
    (broken / "checkpoints" / "step_00000006.dcp" / "__1_0.distcp").unlink()
    with pytest.raises(CheckpointError, match=r"shard file __1_0\.distcp is missing"):
        train(load_config(None, tiny_random + STEPS), broken, progress=False)
    with pytest.raises(CheckpointError, match=r"__1_0\.distcp"):
        vitlab.load_model(broken, "last")


def test_outputs_load_and_convert_like_any_run(two, tmp_path, spawn):
    model = vitlab.load_model(two)
    torch.testing.assert_close(model.state_dict()["head.weight"], _weights(two)["head.weight"], rtol=0, atol=0)
    assert (two / "checkpoints" / BEST_SHARDED).is_dir()
    last = vitlab.load_model(two, "last")  # the last step checkpoint's EMA weights = model/ (taken at that step)
    _close(last.state_dict(), _weights(two), atol=0)
    # one safetensors file from a step checkpoint directory
    dst = tmp_path / "step14.safetensors"
    p = spawn("vitlab", "convert", str(two / "checkpoints" / "step_00000014.dcp"), str(dst), "--to", "timm")
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    converted = load_file(str(dst))
    torch.testing.assert_close(converted["head.weight"], _weights(two)["head.weight"], rtol=0, atol=0)


def test_strategy_values_are_checked():
    assert load_config(None, ["train.strategy=fsdp"]).train.strategy == "fsdp"
    with pytest.raises(ValueError, match="train.strategy='zero3' is not one of"):
        load_config(None, ["train.strategy=zero3"])


def test_checkpoints_of_another_strategy_are_refused(two, tmp_path, tiny_random):
    other = _resume_from(two, 6, tmp_path / "ddp")
    with pytest.raises(ValueError, match="saved under train.strategy=fsdp and cannot resume under train.strategy=auto"):
        train(load_config(None, tiny_random + STEPS[:-1]), other, progress=False)


def test_auto_strategy_rule(monkeypatch):
    """auto: ddp, unless several CUDA processes train a model whose fp32 training state (16 bytes a parameter)
    exceeds half of one GPU; one process is the plain model."""
    from types import SimpleNamespace

    from vitlab.train.distributed import Dist
    from vitlab.train.strategy import resolve

    cpu2, gpu1, gpu2 = Dist(world=2), Dist(device=torch.device("cuda")), Dist(world=2, device=torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda dev: SimpleNamespace(total_memory=80 * 2**30))
    assert resolve("auto", Dist(), 10**10) == "none" and resolve("auto", cpu2, 10**10) == "ddp"
    # on 80 GiB GPUs: ViT-G/14 (1.84e9 parameters, 27.5 GiB of state) still fits half a GPU; 3e9 (44.7 GiB) does not
    assert resolve("auto", gpu2, 1_844_440_680) == "ddp" and resolve("auto", gpu2, 3 * 10**9) == "fsdp"
    assert resolve("auto", gpu1, 3 * 10**9) == "none"  # one process: sharding would save nothing
    assert resolve("fsdp", Dist(), 10) == "fsdp" and resolve("ddp", Dist(), 10) == "none"


def test_stages_resample_position_embeddings_under_fsdp(tmp_path, tiny_random, spawn):
    """A low-resolution stage, then the model's size (position embeddings resampled mid-run, kept whole on
    every process): 2 fsdp processes = 1 process with accumulation, and a resume from a checkpoint taken
    in the low-resolution stage is exact."""
    args = tiny_random + ["schedule.epochs=3", "data.dev_fraction=0.1", "train.ema_decay=0.9", "train.strategy=fsdp",
                          "train.ckpt_every_steps=3", "train.keep_last=10",
                          "schedule.stages=[{epoch: 0, img_size: 4}, {epoch: 1, lr: 5e-4}]"]
    p = spawn(*TORCHRUN, "2", "-m", "vitlab", "train", "--out", str(tmp_path / "two"), "--no-progress", *args)
    train(load_config(None, args + ["data.accum_steps=2"]), tmp_path / "one", progress=False)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    assert "step 7: training at 8x8" in out
    _close(_weights(tmp_path / "two"), _weights(tmp_path / "one"))
    first = read_sharded(tmp_path / "two" / "checkpoints" / "step_00000003.dcp")
    assert first["img_size"] == [4, 4] and first["model"]["pos_embed"].shape[1] == 1 + 2 * 2
    resumed = _resume_from(tmp_path / "two", 3, tmp_path / "resumed")
    train(load_config(None, args + ["data.accum_steps=2"]), resumed, progress=False)
    _close(_weights(resumed), _weights(tmp_path / "one"))


def test_masked_patch_pretraining_under_fsdp_equals_one_process(tmp_path, tiny_random, spawn):
    """train.objective=masked_patch: 2 fsdp processes = 1 process (the encoder in model/, the [mask] embedding
    and colour head in the sharded checkpoints); its evaluation runs on each process's share of the images."""
    args = [a for a in tiny_random if not a.startswith(("data.mixup", "data.label_smoothing"))] + [
        "train.objective=masked_patch", "optim.name=adam", "optim.lr=3e-3", "optim.weight_decay=0.0",
        "schedule.steps=10", "schedule.warmup_steps=2", "data.normalize=mnist", "data.dev_fraction=0.1",
        "train.ema_decay=0.9", "train.strategy=fsdp", "train.ckpt_every_steps=4"]
    p = spawn(*TORCHRUN, "2", "-m", "vitlab", "train", "--out", str(tmp_path / "two"), "--no-progress", *args)
    train(load_config(None, args + ["data.accum_steps=2"]), tmp_path / "one", progress=False)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    _close(_weights(tmp_path / "two"), _weights(tmp_path / "one"))
    assert not any(k.startswith(("head.", "mask_token")) for k in _weights(tmp_path / "two"))
    last = step_checkpoints(tmp_path / "two")[-1].name
    ta, tb = (read_sharded(tmp_path / r / "checkpoints" / last, ("pretext.",))["pretext"] for r in ("two", "one"))
    assert set(ta) == {"mask_token", "head.weight", "head.bias"}
    _close(ta, tb)
    # The evaluation corrupts each process's share of the images from the same seed, so its figures depend on
    # the process count (as under ddp); both runs evaluated and finished.
    assert all(0 <= json.loads((tmp_path / r / "final.json").read_text())["masked_acc"] <= 100 for r in ("two", "one"))


class _Payload:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_sharded_checkpoint_runs_no_code(two, tmp_path):
    """DCP's own reader unpickles the .metadata index; vitlab's only unpickles DCP's metadata classes."""
    evil = _resume_from(two, 6, tmp_path / "evil") / "checkpoints" / "step_00000006.dcp"
    marker = tmp_path / "pwned"
    with open(evil / ".metadata", "wb") as f:
        pickle.dump(_Payload(marker), f)
    for read in (lambda: vitlab.load_model(evil.parents[1], "last"), lambda: read_sharded(evil)):
        with pytest.raises(CheckpointError, match=r"refused to read .*\.metadata.*never runs code"):
            read()
    assert not marker.exists()
