"""A finished run's outputs: final.json, curves.png, confusion.png and report.md next to model/."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..utils.io import atomic_write
from ..weights.runs import FINAL_FILE, REPORT_FILE
from .config import Config
from .objectives import OBJECTIVES
from .runlog import read_metrics


def plot_curves(records: list[dict[str, Any]], path: Path) -> Path:
    """Training loss and eval accuracy against the step (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    train = [r for r in records if r.get("train_loss") is not None]
    ax_loss.plot([r["step"] for r in train], [r["train_loss"] for r in train], label="train loss")
    for split in ("dev", "test"):
        for acc, loss, name in (("top1", "loss", "top-1"), ("masked_acc", "masked_loss", "masked-patch acc")):
            ev = [r for r in records if r.get(f"{split}_{acc}") is not None]
            if ev:
                ax_loss.plot([r["step"] for r in ev], [r[f"{split}_{loss}"] for r in ev], "o-", label=f"{split} {loss}")
                ax_acc.plot([r["step"] for r in ev], [r[f"{split}_{acc}"] for r in ev], "o-", label=f"{split} {name}")
    ax_loss.set(xlabel="step", ylabel="loss", title="loss")
    ax_acc.set(xlabel="step", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path


def plot_confusion(confusion: list[list[int]], classes: list[str], path: Path) -> Path:
    """Row-normalised confusion matrix (true class per row) with counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cm = np.asarray(confusion, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * k, 0.8 + 0.55 * k))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if k <= 30:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
        ax.set_xticks(range(k), classes, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(k), classes, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix (test)")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path


def write_outputs(run_dir: Path, cfg: Config, final: dict[str, Any], classes: list[str]) -> None:
    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    plot_curves(records, run_dir / "curves.png")
    if "confusion" in final:  # classification; masked_patch pretraining has no labels to confuse
        plot_confusion(final["confusion"], classes, run_dir / "confusion.png")
    report = render_report(cfg, final, records)
    atomic_write(run_dir / REPORT_FILE, lambda tmp: tmp.write_text(report))
    text = json.dumps(final, indent=2) + "\n"  # last: its existence tells the experiments the run finished
    atomic_write(run_dir / FINAL_FILE, lambda tmp: tmp.write_text(text))


def render_report(cfg: Config, final: dict[str, Any], records: list[dict[str, Any]]) -> str:
    m, o, s, d = cfg.model, cfg.optim, cfg.schedule, cfg.data
    opts = ", ".join(f"{k}={v}" for k, v in m.options.items())
    speed = [r["img_per_s"] for r in records if r.get("img_per_s")]
    objective = OBJECTIVES[final["objective"]]
    split = "dev" if d.dev_fraction else "test"
    lines = [
        f"# Training report: {m.name or m.weights} on {d.dataset}{objective.title}",
        "",
        "| metric | value |",
        "|---|---|",
        *objective.report_rows(final, split),
        f"| steps / epochs | {final['steps']} / {final['epochs']:.2f} |",
        f"| training time | {final['train_time_s'] / 60:.1f} min ({final['processes']} process(es), {final['device']}) |",
        f"| throughput (median) | {sorted(speed)[len(speed) // 2] if speed else 0:.0f} images/s |",
        "",
        f"Model: `{m.name}` {opts}{' from ' + m.weights if m.weights else ''}; EMA: {final['ema']}.",
        f"Optimizer: {o.name} lr {o.lr} wd {o.weight_decay} clip {o.clip_grad_norm}, {o.loss} cross-entropy; "
        f"schedule: {s.decay}, warmup {s.warmup_steps if s.warmup_steps is not None else str(s.warmup_epochs) + ' epochs'}; "
        f"batch {d.batch_size}.",
        f"Augmentation: crop scale {list(d.crop_scale)}, flip {d.flip}, shift {d.translate} px, RandAugment {d.randaugment}, "
        f"mixup {d.mixup_alpha} / cutmix {d.cutmix_alpha}, label smoothing {d.label_smoothing}, "
        f"random erasing {d.random_erasing}.",
        "",
        *objective.report_body(final),
        "Files: `model/` (save_pretrained: config.json + model.safetensors), `config.yaml` (resolved recipe), "
        "`metrics.jsonl`, `tb/` (TensorBoard), `checkpoints/` (last-k + best.pt), `final.json`.",
        "",
    ]
    return "\n".join(lines)
