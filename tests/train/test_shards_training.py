"""Training on tar shards read shard by shard (data.shard_order=auto -> shards): a run killed mid-epoch and
resumed ends bit-identical to an uninterrupted one, and 2 processes under torchrun, 2 workers each, see every
training sample of an epoch exactly once between them (up to the documented remainder), in the order the
schedule states."""
import json
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from vitlab.cli import main
from vitlab.train import load_config, train

SHARDED = ["data.workers=2", "data.batch_size=12", "data.normalize=minus1_1", "data.eval_batch_size=64",
           "data.shuffle_buffer=8", "model.name=vit_mnist", "model.img_size=16", "model.patch_size=4",
           "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.mlp_dim=64", "train.threads=1",
           "train.log_every_steps=1", "data.crop_scale=[0.3,1.0]", "data.mixup_alpha=0.2", "model.drop_path_rate=0.1",
           "model.drop_rate=0.1", "data.label_smoothing=0.1", "data.randaugment=[2,5]"]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):  # shard indexes in the test's directory (children inherit it)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _weights(run):
    return load_file(str(run / "model" / "model.safetensors"))


@pytest.mark.slow
def test_sigkill_mid_epoch_on_shards_then_resume_is_bit_identical(tmp_path, make_folder, spawn, sigkill_at, capsys):
    folder = make_folder(tmp_path / "photos", per_class=20)
    assert main(["data", "pack", str(folder), str(tmp_path / "sh"), "--shard-size", "9"]) == 0
    args = SHARDED + [f"data.dataset={tmp_path / 'sh'}", "schedule.epochs=3", "schedule.warmup_steps=2",
                      "train.ckpt_every_steps=3", "train.ema_decay=0.9"]
    ref = train(load_config(None, args), tmp_path / "ref", progress=False)
    assert ref.step == 12  # 60 samples, 12 held out by key, 48 / 12 = 4 steps an epoch
    assert "data.shard_order=shards" in capsys.readouterr().out
    killed = spawn("vitlab", "train", "--out", str(tmp_path / "kill"), "--no-progress", *args)
    ckpt = tmp_path / "kill" / "checkpoints" / "step_00000006.pt"  # mid-epoch 1
    sigkill_at(killed, ckpt)
    assert not (tmp_path / "kill" / "final.json").exists()
    out = train(load_config(None, args), tmp_path / "kill", progress=False)
    assert out.step == 12
    a, b = _weights(tmp_path / "kill"), _weights(tmp_path / "ref")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ"
    # the consumers take shards as they take a folder: eval (the held-out keys), fewshot and analyze
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "ref")]) == 0
    assert "12 held-out test images" in capsys.readouterr().out
    assert main(["fewshot", str(tmp_path / "ref"), "--data", str(tmp_path / "sh"), "--split-test", "train",
                 "--shots", "2", "--seeds", "0", "--workers", "0"]) == 0
    assert main(["analyze", str(tmp_path / "ref"), "--data", str(tmp_path / "sh"), "--split", "train", "--out",
                 str(tmp_path / "an"), "--num-images", "4", "--num-rollout", "1"]) == 0


# Under torchrun: the real training loop, with the batch provider's get() wrapped to record the labels of every
# micro-batch it hands out. Each sample is its own class, so a label names a sample.
RECORD = textwrap.dedent("""
    import json, os, sys
    from vitlab.data import pipeline
    from vitlab.train import load_config, train
    out, args = sys.argv[1], sys.argv[2:]
    seen, real = [], pipeline.StreamingBatches.get
    def get(self, step, k):
        x, y = real(self, step, k)
        seen.append([step, k, y.tolist()])
        return x, y
    pipeline.StreamingBatches.get = get
    train(load_config(None, args), out, progress=False)
    with open(os.path.join(out, f"seen{os.environ['RANK']}.json"), "w") as f:
        json.dump(seen, f)
""")


@pytest.mark.slow
def test_two_processes_on_shards_see_every_sample_once_an_epoch(tmp_path, make_folder, spawn):
    make_folder(tmp_path / "src" / "train", classes=30, per_class=1)
    make_folder(tmp_path / "src" / "test", classes=30, per_class=1, seed=1)
    assert main(["data", "pack", str(tmp_path / "src"), str(tmp_path / "sh"), "--shard-size", "4"]) == 0
    script = tmp_path / "record.py"
    script.write_text(RECORD)
    args = SHARDED + [f"data.dataset={tmp_path / 'sh'}", "data.batch_size=8", "schedule.epochs=2",
                      "data.mixup_alpha=0", "data.label_smoothing=0", "train.eval_every_epochs=5"]
    p = spawn("torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), str(tmp_path / "run"), *args)
    out, err = p.communicate(timeout=400)
    assert p.returncode == 0, err[-3000:]
    assert "2 process(es) x 2 reader(s)" in out
    seen = [json.loads((tmp_path / "run" / f"seen{r}.json").read_text()) for r in (0, 1)]
    assert [[k for _, k, _ in s] for s in seen] == [[0] * 6, [1] * 6]  # 30 // 8 = 3 steps an epoch, 2 epochs
    for epoch in (0, 1):
        ranks = [[y for step, _, ys in s if step // 3 == epoch for y in ys] for s in seen]
        every = ranks[0] + ranks[1]
        assert len(every) == len(set(every)) == 24  # each once; 30 - 3 x 8 = 6 left out (the remainder)
    # the loop read what the schedule says, for each rank (labels = rows: one sample per class, in class order)
    from vitlab.data import open_dataset
    from vitlab.data.shard_order import ShardSchedule

    src = open_dataset(str(tmp_path / "sh"))
    assert src.labels.tolist() != list(range(30))  # written shuffled: labels are not rows, map them
    for r in (0, 1):
        sched = ShardSchedule(src.shard, 0, 3, 6, 8, 4, 1, 2, r, 2, 8)
        want = [[m.step, m.k, src.labels[m.rows].tolist()] for m in sched.iterate(0)]
        assert seen[r] == want
