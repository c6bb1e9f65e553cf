"""Every experiment end to end at the smoke budget (digits, one-block models, 2 steps per run): its three
outputs, the rows result.json must hold, re-rendering from result.json, and resuming after a kill."""
from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

import vitlab.train
from vitlab.cli import main
from vitlab.experiments import EXPERIMENTS, ExperimentInterrupted, estimate_minutes, render_report, run_experiment
from vitlab.experiments.verdict import OUTCOMES
from vitlab.train import TrainResult


def _check_outputs(out: Path, name: str) -> dict:
    result = json.loads((out / "result.json").read_text())
    assert result["experiment"] == name and result["budget"] == "smoke"
    assert result["verdict"] in OUTCOMES and result["checks"]
    assert len(result["arms"]) == len(result["planned"])
    for row in result["arms"]:
        assert row["config"] and row["metrics"] and row["wall_time_s"] > 0 and row["device"]
        assert isinstance(row["seed"], int)
        assert (out / row["run_dir"] / "final.json").is_file()
    summary = (out / "summary.md").read_text()
    assert f"Verdict: **{result['verdict']}**" in summary and "| check |" in summary
    assert (out / "plot.png").read_bytes()[:4] == b"\x89PNG"
    return result


@pytest.mark.slow
@pytest.mark.parametrize("name", ["transfer", "pos-embed", "masked-patch", "optimizer", "scaling"])
def test_experiment_runs_at_smoke_budget(tmp_path, name):
    out = tmp_path / name
    result = run_experiment(name, out, "smoke", progress=False)
    _check_outputs(out, name)
    if name == "pos-embed":  # two seeds: the table shows mean ± spread
        assert result["seeds"] == 2 and "±" in (out / "summary.md").read_text().split("## Results")[1]
    if name == "transfer":  # fine-tuning at 42px from a 28px checkpoint, and the raw-pixel floor
        rows = {r["arm"]: r for r in result["arms"]}
        assert rows["finetune-42-bicubic-lr0.01"]["config"]["model"]["pos_resample"] == "bicubic"
        assert rows["finetune-42-official-lr0.03"]["config"]["model"]["img_size"] == [42, 42]
        assert rows["probe-pixels"]["config"]["model"] is None and "shots25" in rows["probe-pixels"]["metrics"]
    if name in ("transfer", "masked-patch"):  # every downstream arm swept over its lr grid, chosen on dev
        rows = {r["arm"]: r for r in result["arms"]}
        assert [rows[f"finetune-28-lr{lr}" if name == "transfer" else f"finetune-masked-lr{lr}"]["config"]["optim"]["lr"]
                for lr in ("0.001", "0.003", "0.01", "0.03")] == [0.001, 0.003, 0.01, 0.03]
        assert all("dev_loss" in r["metrics"] for r in result["arms"] if "sweep" in r["tags"])
        assert (out / "summary.md").read_text().count("| yes |") == (4 if name == "transfer" else 3)
    # the report re-renders from result.json alone, with the same verdict
    (out / "summary.md").unlink()
    (out / "plot.png").unlink()
    assert main(["experiment", "report", str(out)]) == 0
    assert _check_outputs(out, name)["verdict"] == result["verdict"]


@pytest.mark.slow
def test_killed_experiment_resumes_and_skips_finished_arms(tmp_path, monkeypatch):
    real, calls, kill = vitlab.train.train, [], [True]

    def killed_at_third_arm(cfg, out, **kw):
        calls.append(Path(out))
        if kill[0] and len(calls) == 3:  # as if SIGTERM arrived: the trainer saves and reports the signal
            return TrainResult(Path(out), 0, cfg.schedule.steps, interrupted=signal.SIGTERM)
        return real(cfg, out, **kw)

    monkeypatch.setattr(vitlab.train, "train", killed_at_third_arm)
    out = tmp_path / "ds"
    with pytest.raises(ExperimentInterrupted) as e:
        run_experiment("data-scaling", out, "smoke", progress=False)
    assert e.value.signum == signal.SIGTERM
    partial = json.loads((out / "result.json").read_text())
    assert len(partial["arms"]) == 2 < len(partial["planned"]) == 6
    finished = {p: p.joinpath("final.json").stat().st_mtime_ns for p in calls[:2]}

    calls.clear()
    kill[0] = False
    result = run_experiment("data-scaling", out, "smoke", progress=False)
    assert len(calls) == 4 and not set(calls) & set(finished)  # the two finished arms were not trained again
    assert all(p.joinpath("final.json").stat().st_mtime_ns == t for p, t in finished.items())
    assert [r["skipped"] for r in result["arms"]] == [True, True, False, False, False, False]
    _check_outputs(out, "data-scaling")


def test_an_experiment_directory_holds_one_experiment_and_budget(tmp_path):
    out = tmp_path / "x"
    out.mkdir()
    (out / "result.json").write_text(json.dumps({"experiment": "transfer", "budget": "quick"}))
    with pytest.raises(ValueError, match="use another --out"):
        run_experiment("transfer", out, "smoke", progress=False)
    with pytest.raises(ValueError, match="unknown experiment"):
        run_experiment("nope", tmp_path / "y", "smoke")


def test_list_and_declared_budgets(capsys):
    assert main(["experiment", "list"]) == 0
    text = capsys.readouterr().out
    for name, exp in EXPERIMENTS.items():
        assert name in text and exp.claim in text
        assert estimate_minutes(name, "quick") <= 15.5 and estimate_minutes(name, "full") <= 60


@pytest.mark.parametrize("budget", ["quick", "full"])
def test_quick_and_full_arms_are_valid_recipes(tmp_path, budget):
    """The budgets the tests do not run still declare valid recipes whose models build at their sizes."""
    import torch

    import vitlab
    from vitlab.experiments import SCALES, Context, get_experiment
    from vitlab.train.config import config_from_dict, model_options

    for name in EXPERIMENTS:
        exp = get_experiment(name)
        arms = exp.build(Context(tmp_path, budget, SCALES[budget], list(range(exp.seeds)), "cpu"))
        assert len({(a.name, a.seed) for a in arms}) == len(arms)
        for arm in arms:
            if arm.config is not None:
                cfg = config_from_dict(arm.config)
                cfg.validate()
                with torch.device("meta"):  # shapes only: no memory, no initialisation
                    model = vitlab.create_model(cfg.model.name, num_classes=5, **model_options(cfg))  # without weights
                assert model.cfg.img_size[0] in (28, 42)
