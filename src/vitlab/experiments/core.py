"""Experiments as declarations: a claim, arms (ordinary training runs or few-shot probes), a metric, checks.

Every arm is a run directory ``OUT/runs/<arm>/seed<k>`` written by the normal engine (``vitlab.train.train``
or the few-shot probe), finished when its ``final.json`` exists. Running an experiment again skips the
finished arms, and the trainer resumes a killed one exactly from its checkpoints; ``vitlab eval``,
``analyze`` and ``fewshot`` read any arm's run directory. ``OUT/result.json`` collects every arm's config,
seed, metrics, time and device after each arm; ``summary.md`` and the plot are rendered from it alone
(``vitlab experiment report OUT``), with the verdict from the checks (see ``verdict.py``).
"""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..utils.device import pick_device
from ..utils.figures import rounded
from ..utils.io import atomic_write
from ..weights.runs import FINAL_FILE, METRICS_FILE
from .recipes import BUDGETS, SCALES, Scale, class_split
from .verdict import Z, Check, Estimate, combine

RESULT = "result.json"
SUMMARY = "summary.md"
PLOT = "plot.png"


class ExperimentInterrupted(RuntimeError):
    """An arm's training was stopped by a signal; its checkpoint is saved and the experiment resumes."""

    def __init__(self, signum: int, arm: str) -> None:
        super().__init__(f"arm {arm} stopped by signal {signum}")
        self.signum, self.arm = signum, arm


@dataclass
class Arm:
    """One run of an experiment. ``config``: a training recipe (dict of sections) for ``vitlab.train``;
    ``probe``: a few-shot linear probe instead, ``{"model": run dir or None for raw pixels, "data": spec,
    "shots": [...], "draws": [...]}``. ``tags`` are the table's columns (model, data size, ...)."""

    name: str
    seed: int
    config: dict[str, Any] | None = None
    probe: dict[str, Any] | None = None
    tags: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.config is None) == (self.probe is None):
            raise ValueError(f"arm {self.name}: give exactly one of config (a training run) or probe")

    @property
    def kind(self) -> str:
        return "train" if self.config is not None else "probe"


@dataclass
class Context:
    """What an experiment's arms are built from: the output root, the budget's scale, seeds, device."""

    root: Path
    budget: str
    scale: Scale
    seeds: list[int]
    device: str
    prepare: dict[str, Callable[[], Any]] = field(default_factory=dict)  # derived data, written before the arms run

    def run_dir(self, arm: str, seed: int) -> Path:
        return self.root / "runs" / arm / f"seed{seed}"

    def class_split(self, name: str, classes: list[int], per_class: int | None = None) -> str:
        """The path of a derived dataset (``classes`` of the budget's dataset, relabelled, at most
        ``per_class`` training images each), written when the experiment runs: building arms writes nothing."""
        path = self.root / "data" / f"{name}.npz"
        self.prepare[str(path)] = lambda: class_split(self.scale.dataset, classes, path, per_class)
        return str(path)


@dataclass
class Analysis:
    """What an experiment reports: table rows (dicts with the same keys), the claim's checks, a plot."""

    rows: list[dict[str, Any]]
    checks: list[Check]
    plot: Callable[[Any], None]  # draws on a matplotlib Figure


@dataclass
class Experiment:
    name: str
    section: str  # the paper's figure, table or section
    claim: str  # one line: what the paper found
    paper: str  # where, with its numbers (../shared/REFERENCE.md sections 9 and 11)
    protocol: str  # how it is tested here, in a few sentences
    metric: str
    seeds: int  # default number of seeds
    build: Callable[[Context], list[Arm]]
    analyze: Callable[[Results], Analysis]


# ------------------------------------------------------------------------------------------ results
class Results:
    """The arms' saved rows with the lookups an analysis needs (metric values over seeds, estimates)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def values(self, arm: str, metric: str) -> list[float]:
        """The metric's samples: one per seed, or for a probe one per seed and draw of the shots."""
        rows = [r["metrics"] for r in self.rows if r["arm"] == arm]
        vals = [v for m in rows for v in m.get(f"{metric}_draws", [m[metric]])]
        if not vals:
            raise KeyError(f"no finished run of arm {arm!r} with metric {metric!r}")
        return vals

    def n(self, arm: str) -> int | None:
        return next((r["metrics"].get("n") for r in self.rows if r["arm"] == arm), None)

    def est(self, arm: str, metric: str) -> Estimate:
        return Estimate.of(self.values(arm, metric), self.n(arm))

    def cell(self, arm: str, metric: str) -> str:
        """``mean ± std`` over the samples (just the mean for one)."""
        v = self.values(arm, metric)
        m = sum(v) / len(v)
        if len(v) == 1:
            return f"{m:.2f}"
        sd = (sum((x - m) ** 2 for x in v) / (len(v) - 1)) ** 0.5
        return f"{m:.2f} ± {sd:.2f}"

    def tags(self, arm: str) -> dict[str, Any]:
        return next(r["tags"] for r in self.rows if r["arm"] == arm)

    def arms(self) -> list[str]:
        return list(dict.fromkeys(r["arm"] for r in self.rows))


def train_metrics(final: dict[str, Any], run_dir: Path | None = None) -> dict[str, Any]:
    """The numbers an analysis uses from a training run's final.json (accuracies in percent), and from
    its metrics.jsonl the last dev-split evaluation (``dev_top1``, ``dev_loss``: what lr choices use)."""
    keys = ("top1", "top5", "masked_acc", "best_dev_top1", "best_dev_masked_acc", "n", "steps", "train_time_s")
    out = {k: final[k] for k in keys if k in final}
    log = run_dir / METRICS_FILE if run_dir is not None else None
    if log is not None and log.is_file():
        evals = [r for r in map(json.loads, log.read_text().splitlines()) if "dev_loss" in r]
        if evals:
            out.update({k: evals[-1][k] for k in ("dev_top1", "dev_loss") if k in evals[-1]})
    return out


def probe_metrics(final: dict[str, Any]) -> dict[str, Any]:
    out = {f"shots{r['shots']}": r["mean"] for r in final["results"]}
    out.update({f"shots{r['shots']}_draws": r["per_seed"] for r in final["results"]})
    out["n"] = final["test_images"]
    return out


# ------------------------------------------------------------------------------------------ running
def _machine() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                   if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def _write_json(path: Path, obj: Any) -> None:
    text = json.dumps(rounded(obj), indent=2) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


def _run_probe(arm: Arm, run_dir: Path, device: str, progress: bool) -> None:
    """The paper's few-shot ridge probe on a model's frozen features, or on raw pixels (the floor)."""
    from ..data import open_dataset
    from ..evaluate.fewshot import fewshot_checkpoint, fewshot_eval

    p = arm.probe
    t0 = time.perf_counter()
    dev = str(pick_device(device)) if p["model"] is not None else "cpu"  # the pixel probe is numpy only
    if p["model"] is not None:
        report = fewshot_checkpoint(p["model"], p["data"], shots=tuple(p["shots"]), seeds=tuple(p["draws"]),
                                    device=dev, progress=progress)
    else:
        # the pixel floor needs every image as an array: the probe's data sets are small (named, or derived .npz)
        train, test = (open_dataset(p["data"], split, in_memory=True) for split in ("train", "test"))

        def pixels(ds):
            return ds.images.flatten(1).double().numpy() / 255.0

        res = fewshot_eval(pixels(train), train.labels.numpy(), pixels(test), test.labels.numpy(),
                           tuple(p["shots"]), tuple(p["draws"]))
        report = {"checkpoint": None, "features": "raw pixels", "data": p["data"], "test_images": len(test),
                  "unit": "percent", "results": [r.percent() for r in res]}
    report.update(objective="fewshot", wall_time_s=time.perf_counter() - t0, device=dev)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(run_dir / FINAL_FILE, report)


def run_arm(arm: Arm, ctx: Context, progress: bool = True) -> dict[str, Any]:
    """Train or probe ``arm`` unless its final.json exists; its result row for result.json."""
    from ..train import train
    from ..train.config import config_from_dict

    run_dir = ctx.run_dir(arm.name, arm.seed)
    done = (run_dir / FINAL_FILE).is_file()
    config = None
    if arm.kind == "train":
        cfg = config_from_dict(arm.config)
        cfg.validate()
        config = cfg.to_dict()
        if not done:
            result = train(cfg, run_dir, progress=progress)
            if result.interrupted is not None:
                raise ExperimentInterrupted(result.interrupted, arm.name)
    elif not done:
        _run_probe(arm, run_dir, ctx.device, progress)
    final = json.loads((run_dir / FINAL_FILE).read_text())
    metrics = train_metrics(final, run_dir) if arm.kind == "train" else probe_metrics(final)
    return {"arm": arm.name, "seed": arm.seed, "kind": arm.kind, "tags": arm.tags, "config": config or arm.probe,
            "metrics": metrics, "wall_time_s": final.get("wall_time_s_this_process", final.get("wall_time_s")),
            "device": final.get("device"), "run_dir": str(run_dir.relative_to(ctx.root)), "skipped": done}


def run_experiment(name: str, out: str | os.PathLike, budget: str = "quick", seeds: int | None = None,
                   device: str = "auto", progress: bool = True) -> dict[str, Any]:
    """Run (or resume) experiment ``name`` into ``out``; returns result.json's content after rendering
    summary.md and the plot. Raises ExperimentInterrupted when a signal stops an arm (rerun to resume)."""
    from . import get_experiment

    exp = get_experiment(name)
    if budget not in BUDGETS:
        raise ValueError(f"budget {budget!r} is not one of {BUDGETS}")
    n_seeds = exp.seeds if seeds is None else seeds
    if n_seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {n_seeds}")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    prev = root / RESULT
    if prev.is_file():
        old = json.loads(prev.read_text())
        if (old.get("experiment"), old.get("budget")) != (name, budget):
            raise ValueError(f"{root} holds the {old.get('experiment')} experiment at budget {old.get('budget')}; "
                             f"use another --out for {name} at budget {budget}")
    ctx = Context(root, budget, SCALES[budget], list(range(n_seeds)), device)
    arms = exp.build(ctx)
    for write in ctx.prepare.values():
        write()
    command = f"vitlab experiment run {name} --out {root} --budget {budget} --seeds {n_seeds}" + (
        f" --device {device}" if device != "auto" else "")
    result = {"experiment": name, "budget": budget, "seeds": n_seeds, "command": command, "machine": _machine(),
              "planned": [f"{a.name}/seed{a.seed}" for a in arms], "arms": []}
    t0 = time.perf_counter()
    for i, arm in enumerate(arms):
        if progress:
            print(f"[{name} {i + 1}/{len(arms)}] {arm.name} seed {arm.seed}", flush=True)
        result["arms"].append(run_arm(arm, ctx, progress))
        result["this_invocation_s"] = time.perf_counter() - t0
        _write_json(prev, result)
    render_report(root)
    return json.loads(prev.read_text())


# ------------------------------------------------------------------------------------------ reports
def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no rows)"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


RULE = (f"Each check compares two estimates (percent). The error of a difference combines both sides' standard "
        f"errors, each the larger of the seed spread (std / sqrt(samples); a few-shot probe's samples are its seeds' "
        f"draws of the shots) and the binomial error of an accuracy on "
        f"n test images. `a > b` agrees when the difference exceeds {Z:g} errors, disagrees below -{Z:g}, and is "
        f"inconclusive in between; `a ~ b` agrees within {Z:g} errors and disagrees outside. The verdict agrees "
        f"when every check agrees, disagrees when any disagrees, and is inconclusive otherwise.")


def render_report(out: str | os.PathLike) -> dict[str, Any]:
    """Recompute checks, verdict, summary.md and the plot from ``out/result.json`` alone."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import get_experiment

    root = Path(out)
    path = root / RESULT
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `vitlab experiment run NAME --out {root}` first")
    result = json.loads(path.read_text())
    exp = get_experiment(result["experiment"])
    finished = {f"{r['arm']}/seed{r['seed']}" for r in result["arms"]}
    missing = [p for p in result["planned"] if p not in finished]
    total = sum(r["wall_time_s"] or 0.0 for r in result["arms"])
    head = [f"# Experiment `{exp.name}` ({result['budget']} budget)", "",
            f"**Claim** ({exp.paper}): {exp.claim}", "", f"**Protocol.** {exp.protocol}", "",
            f"**Metric.** {exp.metric}", "", f"Command: `{result['command']}`  ",
            f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, "
            f"{result['machine']['torch_threads']} torch threads, torch {result['machine']['torch']}"
            + (f", {result['machine']['cuda']}" if result['machine'].get('cuda') else "") + "  ",
            f"Time: {total / 60:.1f} min summed over the arms' runs ({len(result['arms'])} runs, "
            f"{result['seeds']} seed(s))", ""]
    if missing:
        result["verdict"] = "incomplete"
        result["checks"] = []
        body = [f"**Incomplete**: {len(missing)} of {len(result['planned'])} runs not finished "
                f"({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}); rerun the command to resume."]
    else:
        a = exp.analyze(Results(result["arms"]))
        verdict = combine(a.checks)
        result["checks"] = [c.as_dict() for c in a.checks]
        result["verdict"] = verdict
        fig = plt.figure(figsize=(7.5, 4.5))
        a.plot(fig)
        fig.tight_layout()
        fig.savefig(root / PLOT, dpi=110)
        plt.close(fig)
        checks = [{"check": c.text, "difference": f"{c.diff:+.2f} ± {c.se:.2f}", "outcome": c.outcome}
                  for c in a.checks]
        body = [f"## Verdict: **{verdict}**", "", _table(checks), "", f"Rule: {RULE}", "", "## Results", "",
                _table(a.rows), "", f"![plot]({PLOT})"]
    (root / SUMMARY).write_text("\n".join(head + body) + "\n")
    _write_json(path, result)
    return result
