"""A training run directory as a source of models, and the file names the trainer writes into it.

    RUN/config.yaml               the resolved recipe
    RUN/metrics.jsonl             per-step and per-evaluation scalars
    RUN/final.json                the test summary, written last: its existence means "finished"
    RUN/report.md                 the human-readable summary
    RUN/split.json                the held-out test files of a source without a test split (vitlab.data.splits)
    RUN/skipped.txt               training files found unreadable while streaming, each replaced by another
    RUN/model/                    save_pretrained directory of the finished run (last or EMA weights)
    RUN/checkpoints/step_N.pt     the last few training checkpoints (N zero-padded to 8 digits)
    RUN/checkpoints/step_N.dcp/   the same under train.strategy=fsdp: a torch.distributed.checkpoint
                                  directory (one file per process) plus meta.json (step, recipe, ...)
    RUN/checkpoints/best.pt       the checkpoint of the best evaluation so far (best.dcp/ under fsdp)

The trainer, the experiments, serving and export write or read these names; they are defined here only,
below all of them. Every run file is written atomically (``vitlab.utils.io.atomic_write``).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..errors import CheckpointError

CONFIG_FILE = "config.yaml"
SKIPPED_FILE = "skipped.txt"  # training files found unreadable while streaming: path <tab> reason
METRICS_FILE = "metrics.jsonl"
FINAL_FILE = "final.json"
REPORT_FILE = "report.md"
MODEL_DIR = "model"
CKPT_DIR = "checkpoints"
BEST = "best.pt"
SHARDED_SUFFIX = ".dcp"  # a step checkpoint directory written by torch.distributed.checkpoint
BEST_SHARDED = "best" + SHARDED_SUFFIX
SHARDED_META = "meta.json"  # inside a .dcp directory: everything but the tensors
STEP_FILE = re.compile(r"^step_(\d{8,})(\.pt|\.dcp)$")
CHOICES = ("best", "last")  # besides a path


def step_name(step: int, sharded: bool) -> str:
    """The file (or, sharded, directory) name of the step checkpoint at ``step``."""
    return f"step_{step:08d}{SHARDED_SUFFIX if sharded else '.pt'}"


def is_sharded_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a sharded (torch.distributed.checkpoint) training checkpoint directory."""
    return Path(path).is_dir() and (Path(path) / SHARDED_META).is_file()


def step_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The run's step checkpoints (files, or sharded directories), oldest first."""
    d = Path(run_dir) / CKPT_DIR
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := STEP_FILE.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    ckpts = step_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def select_checkpoint(run_dir: str | os.PathLike, which: str | os.PathLike) -> Path:
    """``best``: RUN/checkpoints/best.pt; ``last``: the latest step checkpoint; anything else: a path, as
    given or inside RUN/checkpoints."""
    run = Path(run_dir)
    if str(which) in CHOICES:
        if not run.is_dir():
            raise CheckpointError(f"--checkpoint {which} needs a training run directory, but {run} is not a directory")
        best = next((p for p in (run / CKPT_DIR / BEST, run / CKPT_DIR / BEST_SHARDED) if p.exists()), None)
        path = best if which == "best" else latest_checkpoint(run)
        if path is None or not path.exists():
            kind = "best.pt (written when an evaluation improves on the best score)" if which == "best" else "step checkpoints"
            raise CheckpointError(f"{run / CKPT_DIR} has no {kind}; is {run} a training run directory?")
        return path
    for path in (Path(which), run / CKPT_DIR / which):
        if path.is_file() or is_sharded_checkpoint(path):
            return path
    raise FileNotFoundError(f"checkpoint {which} not found (nor {run / CKPT_DIR / which}); give best, last or a file")


def run_of(checkpoint: Path) -> Path | None:
    """The run directory a training checkpoint file belongs to (the parent of its checkpoints/ folder)."""
    return checkpoint.parent.parent if checkpoint.parent.name == CKPT_DIR else None


def is_training_checkpoint(obj: Any) -> bool:
    """Whether a loaded torch file is a checkpoint the vitlab trainer wrote (weights, step and recipe)."""
    return isinstance(obj, dict) and {"model", "step", "config"} <= set(obj) and isinstance(obj["config"], dict)


def training_weights(obj: dict[str, Any]) -> dict[str, Any]:
    """The weights a training checkpoint's evaluation used: the EMA average when the run kept one."""
    return obj["ema"]["module"] if obj.get("ema") else obj["model"]


def run_dataset(ckpt: str | os.PathLike, data_dir: str | None = None) -> tuple[str | None, str | None]:
    """The data set (and data_dir) a training run directory's recipe names, for `ckpt` inside a run (the run
    directory, its model/ or a checkpoint; a run trimmed to config.yaml + model/ counts, as vitlab/fmnist in the
    package is); (None, data_dir) elsewhere."""
    import yaml

    p = Path(ckpt)
    for d in (p, p.parent, p.parent.parent):
        if (d / CONFIG_FILE).is_file() and ((d / CKPT_DIR).is_dir() or (d / MODEL_DIR).is_dir()):
            section = (yaml.safe_load((d / CONFIG_FILE).read_text()) or {}).get("data") or {}
            if section.get("dataset"):
                return section["dataset"], data_dir or section.get("data_dir")
    return None, data_dir
