"""train.precision: what `auto` picks (cpuinfo and the speed probe mocked), and a bf16 run stays finite."""
import math
from pathlib import Path

import pytest
import torch

from vitlab.models.registry import get_config
from vitlab.models.vit import VisionTransformer
from vitlab.train import load_config, train
from vitlab.train import precision as P
from vitlab.train.runlog import read_metrics

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _model_and_batch():
    cfg = get_config("vit_mnist", img_size=8, patch_size=2, in_chans=1, embed_dim=32, depth=2, num_heads=2,
                     mlp_dim=64, num_classes=10)
    return VisionTransformer(cfg), torch.zeros(4, 1, 8, 8)


def _cpuinfo(tmp_path, flags: str) -> Path:
    p = tmp_path / "cpuinfo"
    p.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f {flags}\n")
    return p


def _no_probe(*a, **k):
    raise AssertionError("the probe must not run here")


def test_auto_is_fp32_on_a_cpu_without_native_bf16(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "bf16_speedup", _no_probe)
    monkeypatch.setattr(P, "PROBE_MIN_MACS", 0.0)  # even a model big enough to probe
    model, x = _model_and_batch()
    p = P.choose_precision("auto", model, x, cpuinfo=_cpuinfo(tmp_path, ""))
    assert not p.bf16 and "no native bf16" in p.reason
    assert not P.choose_precision("auto", model, x, cpuinfo=tmp_path / "missing").bf16


def test_auto_small_model_skips_the_probe(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "bf16_speedup", _no_probe)
    model, x = _model_and_batch()
    p = P.choose_precision("auto", model, x, cpuinfo=_cpuinfo(tmp_path, "avx512_bf16"))
    assert not p.bf16 and "too small" in p.reason


@pytest.mark.parametrize("speedup,bf16", [(1.6, True), (0.74, False), (1.05, False)])
def test_auto_follows_the_probe_on_a_bf16_cpu(tmp_path, monkeypatch, speedup, bf16):
    monkeypatch.setattr(P, "bf16_speedup", lambda model, x: speedup)
    monkeypatch.setattr(P, "PROBE_MIN_MACS", 0.0)
    model, x = _model_and_batch()
    p = P.choose_precision("auto", model, x, cpuinfo=_cpuinfo(tmp_path, "amx_bf16"))
    assert p.bf16 is bf16 and f"{speedup:.2f}x" in p.reason and "amx_bf16" in str(p)


def test_explicit_settings_and_bad_value(tmp_path):
    model, x = _model_and_batch()
    assert P.choose_precision("bf16", model, x, cpuinfo=_cpuinfo(tmp_path, "")).bf16
    assert not P.choose_precision("fp32", model, x).bf16
    with pytest.raises(ValueError, match="fp16"):
        P.choose_precision("fp16", model, x)


def test_probe_measures_without_touching_the_model():
    model, x = _model_and_batch()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    assert P.bf16_speedup(model, x, steps=1) > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state()) and all(p.grad is None for p in model.parameters())


def test_bf16_training_run_has_finite_losses_and_says_so(tmp_path, tiny, capsys):
    cfg = load_config(CONFIGS / "pretrain.yaml", tiny + ["train.precision=bf16", "schedule.epochs=1",
                                                          "schedule.warmup_steps=1", "optim.lr=1e-3"])
    res = train(cfg, tmp_path, progress=False)
    assert res.final is not None and math.isfinite(res.final["loss"])
    losses = [r["train_loss"] for r in read_metrics(tmp_path) if "train_loss" in r]
    assert losses and all(math.isfinite(v) for v in losses)
    lines = capsys.readouterr().out.strip().splitlines()
    banner = next(line for line in lines if line.startswith("training: "))  # after the data source's line
    assert lines.index(banner) <= 1 and banner.endswith("bf16 autocast (set by train.precision)")
