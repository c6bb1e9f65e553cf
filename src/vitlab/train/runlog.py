"""What a run shows while it trains: a tqdm bar (or, without one, a line every train.log_every_steps),
RUN/metrics.jsonl and TensorBoard events in RUN/tb/.

Only rank 0 writes. On resume, metric records after the checkpoint's step (written by the interrupted
process after its last save) are dropped, so the curves show each step once.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..utils.io import atomic_write
from ..weights.runs import METRICS_FILE


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    p = Path(run_dir) / METRICS_FILE
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


class Pace:
    """The time a run has left, at the wall-clock pace since this process's first step ended: compiling (the
    first step's) is left out, evaluations and checkpoints are counted."""

    def __init__(self) -> None:
        self.start: tuple[float, int] | None = None  # (clock, step) when the first step ended

    def stepped(self, step: int) -> None:
        if self.start is None:
            self.start = (time.perf_counter(), step)

    def left(self, step: int, total: int) -> float | None:
        """Seconds to step ``total``; None until a step after the first has ended."""
        if self.start is None or step <= self.start[1]:
            return None
        t0, s0 = self.start
        return (time.perf_counter() - t0) / (step - s0) * (total - step)


def clock(seconds: float) -> str:
    """``h:mm:ss`` (or ``m:ss`` under an hour), as tqdm shows times."""
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def train_line(rec: dict[str, Any], total: int, left: float | None) -> str:
    """A training record as a log line, for runs without a progress bar."""
    return (f"step {rec['step']}/{total} epoch {rec['epoch']:.2f}: loss {rec['train_loss']:.4f} lr {rec['lr']:.2e} "
            f"grad norm {rec['grad_norm']:.3g}" + (f" {rec['img_per_s']:.0f} img/s" if rec["img_per_s"] else "")
            + (f" ETA {clock(left)}" if left is not None else ""))


class RunLogger:
    def __init__(self, run_dir: Path, step: int, enabled: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.file = self.tb = None
        if not enabled:
            return
        path = Path(run_dir) / METRICS_FILE
        kept = "".join(json.dumps(r) + "\n" for r in read_metrics(run_dir) if r.get("step", 0) <= step)
        atomic_write(path, lambda tmp: tmp.write_text(kept))  # then appended to, a whole line at a time
        self.file = open(path, "a")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=step + 1 if step else None)

    def scalars(self, rec: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in rec.items()}
        self.file.write(json.dumps(clean) + "\n")
        self.file.flush()
        if self.tb is not None:
            for k, v in rec.items():
                if k not in ("step", "epoch") and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, rec["step"])

    def info(self, msg: str) -> None:
        if self.enabled:
            tqdm.write(msg)

    def progress(self, total: int, initial: int, show: bool = True) -> tqdm:
        return tqdm(total=total, initial=initial, disable=not (self.enabled and show), unit="step",
                    dynamic_ncols=True, mininterval=1.0)

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()
