"""Classification metrics: top-1, top-5, per-class accuracy and the confusion matrix.

Evaluation keeps only counts (a confusion matrix, top-k hits, the summed loss), so shards evaluated
by several processes combine by summation, and results never depend on the batch size.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class EvalCounts:
    """Summable evaluation state; ``confusion[true, predicted]``."""

    confusion: Tensor
    top5: int = 0
    loss_sum: float = 0.0
    class_names: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.confusion.sum())

    def as_tensor(self) -> Tensor:
        """Flat float64 vector (confusion, top5, loss) for one all_reduce."""
        return torch.cat([self.confusion.flatten().double(), torch.tensor([self.top5, self.loss_sum], dtype=torch.float64)])

    def load_tensor(self, t: Tensor) -> None:
        k = self.confusion.shape[0]
        self.confusion = t[: k * k].round().long().view(k, k)
        self.top5, self.loss_sum = int(round(float(t[k * k]))), float(t[k * k + 1])

    def summary(self) -> dict[str, Any]:
        """top1 / top5 / loss / per-class accuracy (percent) and the confusion matrix as lists."""
        n = max(self.n, 1)
        per_class = self.confusion.diag().double() / self.confusion.sum(1).clamp(min=1).double()
        names = self.class_names or [str(i) for i in range(len(per_class))]
        return {
            "n": self.n,
            "top1": 100.0 * float(self.confusion.diag().sum()) / n,
            "top5": 100.0 * self.top5 / n,
            "loss": self.loss_sum / n,
            "per_class": {c: 100.0 * float(a) for c, a in zip(names, per_class)},
            "confusion": self.confusion.tolist(),
        }


def evaluate(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    transform: Callable[[Tensor], Tensor],
    batch_size: int = 1024,
    class_names: Sequence[str] | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> EvalCounts:
    """Counts for uint8 ``images`` (N, C, H, W) held in memory, in chunks of ``batch_size`` through
    ``transform`` on the model's device."""
    device = next(model.parameters(), torch.empty(0)).device
    chunks = ((transform(images[i : i + batch_size].to(device, non_blocking=True)), labels[i : i + batch_size])
              for i in range(0, len(labels), batch_size))
    return evaluate_batches(model, chunks, class_names, autocast_dtype)


@torch.inference_mode()
def evaluate_batches(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    class_names: Sequence[str] | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> EvalCounts:
    """Counts over (model input, labels) batches (e.g. vitlab.data.pipeline.eval_batches): no autograd, any
    number of images."""
    device = next(model.parameters(), torch.empty(0)).device  # no parameters: a deploy.BackendModel (CPU)
    was_training = model.training
    model.eval()
    k = int(getattr(getattr(model, "cfg", None), "num_classes", 0)) or len(class_names or [])
    counts = EvalCounts(torch.zeros(k, k, dtype=torch.long), class_names=list(class_names or []))
    conf = torch.zeros(k * k, dtype=torch.long, device=device)
    top5 = torch.zeros((), dtype=torch.long, device=device)
    loss = torch.zeros((), dtype=torch.float64, device=device)
    for images, labels in batches:
        if not len(labels):
            continue
        x = images.to(device, non_blocking=True)
        y = labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            logits = model(x)
        logits = logits.float()
        if logits.shape[1] != k:
            raise ValueError(f"the model outputs {logits.shape[1]} classes but the data has {k}")
        loss += F.cross_entropy(logits, y, reduction="sum").double()
        pred = logits.argmax(1)
        conf += torch.bincount(y * k + pred, minlength=k * k)
        top5 += (logits.topk(min(5, k), dim=1).indices == y[:, None]).any(1).sum()
    model.train(was_training)
    counts.confusion = conf.view(k, k).cpu()
    counts.top5, counts.loss_sum = int(top5), float(loss)
    return counts


def format_summary(s: dict[str, Any], title: str = "") -> str:
    """Human-readable top-1 / top-5 / per-class table (what `vitlab eval` prints)."""
    lines = [title] if title else []
    lines.append(f"images: {s['n']}")
    lines.append(f"top-1: {s['top1']:.2f}%")
    lines.append(f"top-5: {s['top5']:.2f}%")
    lines.append(f"loss:  {s['loss']:.4f}")
    lines.append("per-class accuracy:")
    width = max((len(c) for c in s["per_class"]), default=5)
    for c, a in s["per_class"].items():
        lines.append(f"  {c:<{width}}  {a:6.2f}%")
    return "\n".join(lines)


def evaluate_checkpoint(
    ckpt: str,
    data: str | None,
    split: str = "test",
    data_dir: str | None = None,
    batch_size: int = 1024,
    device: str | None = None,
    checkpoint: str | None = None,
    backend: str = "torch",
    workers: int | None = None,
) -> dict[str, Any]:
    """Top-1 / top-5 / per-class accuracy of a checkpoint on a dataset, preprocessed as the checkpoint's
    metadata says (EvalTransform.for_model: its Preprocess, mean, std, in_chans; what predict and serve
    use). ``ckpt`` and ``checkpoint`` as for ``vitlab.load_model`` (e.g. a run directory and ``"best"``). A
    run directory that held out its test set is evaluated on exactly those images (``data`` None or the
    run's source; see vitlab.data.splits.open_eval_data).
    ``backend``: see vitlab.deploy (an .onnx file too). ``workers``: processes decoding images read from disk
    (None: default_workers(); unreadable ones are left out and listed under "skipped")."""
    from ..data import EvalTransform
    from ..data.pipeline import default_workers, eval_batches
    from ..data.splits import open_eval_data, run_split_file
    from ..utils.device import pick_device
    from ..weights import load_model
    from ..weights.runs import run_dataset

    if backend == "torch":
        model = load_model(ckpt, checkpoint).to(pick_device(device))
    else:
        from ..deploy import BackendModel, open_backend

        model = BackendModel(open_backend(ckpt, backend, checkpoint=checkpoint))
    cfg = model.cfg
    if data is None and run_split_file(ckpt) is None:
        data, data_dir = run_dataset(ckpt, data_dir)
    ds, what = open_eval_data(ckpt, data, split, data_dir)
    names = list(cfg.class_names) if cfg.class_names else list(ds.classes)
    if cfg.num_classes != ds.num_classes:
        raise ValueError(f"{ckpt} predicts {cfg.num_classes} classes but {what} has {ds.num_classes}")
    if cfg.class_names and list(cfg.class_names) != list(ds.classes):
        raise ValueError(f"class names differ: checkpoint {list(cfg.class_names)[:5]}..., data {ds.classes[:5]}...; "
                         "evaluate on the dataset the model was trained for")
    tf = EvalTransform.for_model(cfg)
    skipped: list[tuple[str, str]] = []
    workers = default_workers() if workers is None else workers
    device = next(model.parameters(), torch.empty(0)).device
    batches = eval_batches(ds, tf, batch_size, workers=workers, device=device, skipped=skipped)
    counts = evaluate_batches(model, batches, names)
    return {**counts.summary(), "data": what, **({"skipped": skipped} if skipped else {})}
