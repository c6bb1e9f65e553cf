"""What a run shows while it trains: a tqdm bar, RUN/metrics.jsonl and TensorBoard events in RUN/tb/.

Only rank 0 writes. On resume, metric records after the checkpoint's step (written by the interrupted
process after its last save) are dropped, so the curves show each step once.
"""
from __future__ import annotations

import json
import math
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
