"""`vitlab eval` and evaluate/metrics.py: top-1, top-5, per-class accuracy from counts."""
import re

import pytest
import torch

import vitlab
from vitlab import cli
from vitlab.data import open_dataset
from vitlab.evaluate.metrics import EvalCounts, evaluate


def _tiny_model(num_classes=10):
    torch.manual_seed(1)
    m = vitlab.create_model("vit_mnist", img_size=8, patch_size=2, in_chans=1, embed_dim=32, depth=1, num_heads=2,
                            mlp_dim=64, num_classes=num_classes, mean=(0.5,), std=(0.5,),
                            class_names=[str(i) for i in range(num_classes)])
    with torch.no_grad():
        m.head.weight.normal_(std=0.5)  # the zero-initialised head would predict class 0 everywhere
    return m.eval()


def _expected(model):
    ds = open_dataset("digits", "test")
    with torch.no_grad():
        logits = model((ds.images.float() / 255 - 0.5) / 0.5)
    y = ds.labels
    top1 = (logits.argmax(1) == y).double().mean().item() * 100
    top5 = (logits.topk(5, 1).indices == y[:, None]).any(1).double().mean().item() * 100
    per_class = [((logits.argmax(1) == y) & (y == c)).sum().item() / (y == c).sum().item() * 100 for c in range(10)]
    return top1, top5, per_class


def test_eval_cli_prints_top1_top5_per_class(tmp_path, capsys):
    model = _tiny_model()
    model.save_pretrained(str(tmp_path / "run" / "model"))  # a training-run directory layout
    top1, top5, per_class = _expected(model)
    for ckpt in (tmp_path / "run", tmp_path / "run" / "model"):
        assert cli.main(["eval", str(ckpt), "--data", "digits", "--batch-size", "100"]) == 0
        out = capsys.readouterr().out
        assert f"top-1: {top1:.2f}%" in out and f"top-5: {top5:.2f}%" in out and "images: 359" in out
        rows = re.findall(r"^  (\d)\s+([\d.]+)%$", out, flags=re.M)
        assert [int(c) for c, _ in rows] == list(range(10))
        assert [float(a) for _, a in rows] == pytest.approx(per_class, abs=0.006)


def test_eval_cli_refuses_a_class_count_mismatch(tmp_path, capsys):
    _tiny_model(num_classes=7).save_pretrained(str(tmp_path / "m"))
    assert cli.main(["eval", str(tmp_path / "m"), "--data", "digits"]) == 2
    assert "predicts 7 classes" in capsys.readouterr().err


def test_counts_do_not_depend_on_batch_size_and_sum_across_shards():
    model = _tiny_model()
    ds = open_dataset("digits", "test")
    tf = lambda x: (x.float() / 255 - 0.5) / 0.5  # noqa: E731
    whole = evaluate(model, ds.images, ds.labels, tf, batch_size=359)
    small = evaluate(model, ds.images, ds.labels, tf, batch_size=50)
    assert torch.equal(whole.confusion, small.confusion) and whole.top5 == small.top5
    halves = [evaluate(model, ds.images[i::2], ds.labels[i::2], tf) for i in (0, 1)]
    merged = EvalCounts(torch.zeros(10, 10, dtype=torch.long))
    merged.load_tensor(halves[0].as_tensor() + halves[1].as_tensor())
    assert torch.equal(merged.confusion, whole.confusion) and merged.top5 == whole.top5
    assert merged.loss_sum == pytest.approx(whole.loss_sum, rel=1e-6)
    assert whole.summary()["n"] == 359
