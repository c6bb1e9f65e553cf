"""torchrun with 2 CPU processes (gloo) reaches the weights of 1 process with the same global batch."""
import torch
from safetensors.torch import load_file

from vitlab.train import load_config, train


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
