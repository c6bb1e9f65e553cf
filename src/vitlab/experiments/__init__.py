"""The paper's findings as runnable experiments: ``vitlab experiment list | run NAME --out DIR | report DIR``.

Each experiment (``catalog.py``) declares its claim with the paper's numbers, its arms (ordinary training
runs and few-shot probes built from the normal recipes), the metric and the checks its verdict follows from
(``verdict.py``); ``core.py`` runs the arms as resumable run directories and renders ``result.json``,
``summary.md`` and ``plot.png``.
"""
from __future__ import annotations

from pathlib import Path

from .catalog import EXPERIMENTS
from .core import Analysis, Arm, Context, Experiment, ExperimentInterrupted, Results, render_report, run_experiment
from .recipes import BUDGETS, SCALES
from .verdict import Check, Estimate, combine, greater, similar

__all__ = ["Analysis", "Arm", "BUDGETS", "Check", "Context", "EXPERIMENTS", "Estimate", "Experiment",
           "ExperimentInterrupted", "Results", "combine", "estimate_minutes", "get_experiment", "greater",
           "list_experiments", "render_report", "run_experiment", "similar"]

# Cost model for `list`: the main job's measured training throughput on 2 idle cores (README, Results), a
# per-run overhead (final test pass, checkpoints, plots) and the other models' step times relative to the
# main job's ViT, from one interleaved step-time comparison (batch 128, 2 threads) on this machine under load.
# An estimate, not a measurement.
VIT_IMAGES_PER_S = 1400.0
RUN_OVERHEAD_S = 8.0
RESNET_COST = {((1, 1, 1, 1), 0.5): 1.56, ((1, 1, 1, 1), 1.0): 1.94, ((2, 2, 2, 2), 1.0): 2.97}
HYBRID_COST = 1.42  # ResNet root + two 1-unit stages under the 6 x 128 ViT


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)} (`vitlab experiment list`)")
    return EXPERIMENTS[name]


def _step_cost(model: dict) -> float:
    """A model's training step cost relative to the main job's ViT (17 tokens); unmeasured ResNets count 3x."""
    if model.get("name", "").startswith("resnet"):
        return RESNET_COST.get((tuple(model.get("layers", ())), float(model.get("width", 1.0))), 3.0)
    if model.get("backbone_layers"):
        return HYBRID_COST
    size = model.get("img_size", 28)
    return ((size // model.get("patch_size", 7)) ** 2 + 1) / 17.0


def estimate_minutes(name: str, budget: str, seeds: int | None = None) -> float:
    """Estimated wall-clock minutes of an experiment on 2 idle cores (quick/full; smoke is seconds)."""
    exp = get_experiment(name)
    n = exp.seeds if seeds is None else seeds
    ctx = Context(Path("/estimate"), budget, SCALES[budget], list(range(n)), "cpu")
    seconds = 0.0
    for arm in exp.build(ctx):
        if arm.config is not None:
            c = arm.config
            images = c["schedule"]["steps"] * c["data"]["batch_size"]
            seconds += images * _step_cost(c["model"]) / VIT_IMAGES_PER_S + RUN_OVERHEAD_S
        else:
            seconds += RUN_OVERHEAD_S
    return seconds / 60.0


def list_experiments() -> str:
    """One block per experiment: name, claim, default seeds and estimated cost per budget."""
    lines = []
    for name, exp in EXPERIMENTS.items():
        cost = ", ".join(f"{b} ~{estimate_minutes(name, b):.0f} min" for b in BUDGETS if b != "smoke")
        lines += [f"{name}  (paper {exp.section})", f"  claim: {exp.claim}",
                  f"  seeds: {exp.seeds}; cost (estimated, 2 idle cores): smoke seconds, {cost}"]
    return "\n".join(lines)
