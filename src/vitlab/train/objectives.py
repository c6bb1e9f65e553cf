"""What a run learns: the objective's loss on a micro-batch, its evaluation, and how its results are logged,
saved in final.json and shown in report.md.

The loop is the same for every objective; what differs is written once here (as big_vision plugs
evaluators into one trainer):

- ``Classify``: labels, softmax or sigmoid cross-entropy against mixup/smoothed soft targets; top-1/top-5.
- ``MaskedPatch`` (``train.objective=masked_patch``, the paper's appendix B.1.2): the encoder, built
  without a head, is wrapped in a MaskedPatchPredictor whose [mask] embedding and colour head train and
  checkpoint with it; evaluation is the masked-patch cross-entropy and accuracy.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import Mixup
from ..evaluate.metrics import evaluate_batches
from . import distributed as dd
from .config import Config


def soft_target_xent(logits: Tensor, target: Tensor, kind: str) -> Tensor:
    """Softmax or sigmoid cross-entropy against soft targets (rows of ``target`` sum to 1)."""
    if kind == "sigmoid":  # summed over classes, as the official pretraining loss
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(1).mean()
    return torch.sum(-target * F.log_softmax(logits, dim=1), dim=1).mean()


@dataclass
class EvalSetup:
    """What an evaluation needs besides the model: this process's share of the split's images as model inputs
    (the input pipeline's ``eval_batches``), the split's size, precision, processes."""

    batches: Iterable[tuple[Tensor, Tensor]]
    n: int  # images in the split, over all processes
    autocast: torch.dtype | None
    dist: dd.Dist
    seed: int


class Objective:
    """The objective-specific pieces of a run; one instance per run."""

    name: ClassVar[str]
    score: ClassVar[str]  # the evaluation summary's key that picks best.pt (higher is better)
    headless: ClassVar[bool] = False  # the model is built without a classifier head (num_classes=0)
    title: ClassVar[str] = ""  # added to report.md's title

    def attach(self, model: nn.Module) -> nn.Module:
        """The module the optimizer trains: ``model`` itself or a wrapper with extra parameters."""
        return model

    def loss(self, net: nn.Module, x: Tensor, labels: Tensor, gen: torch.Generator, seed: int,
             autocast: contextlib.AbstractContextManager) -> Tensor:
        """The loss of one micro-batch (``gen``: its augmentation stream, ``seed``: its stream seed)."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, ev: EvalSetup) -> dict[str, Any]:
        """Summary over a split, each process scoring its share (``ev.batches``); totals are summed."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Tensor] | None:
        """Parameters of its own to checkpoint (saved under "pretext")."""
        return None

    def load_state_dict(self, state: dict[str, Tensor] | None) -> None:
        pass

    # -- reporting: log lines, metrics.jsonl/TensorBoard scalars, final.json, report.md --------------
    def scalars(self, s: dict[str, Any], split: str) -> dict[str, float]:
        raise NotImplementedError

    def describe(self, s: dict[str, Any]) -> str:
        raise NotImplementedError

    def final(self, s: dict[str, Any], test: str, split: str, best: float, run: dict[str, Any]) -> dict[str, Any]:
        """final.json: the summary ``s`` on the ``test`` split, the best per-epoch ``split`` score and ``run``
        (steps, time, ...)."""
        raise NotImplementedError

    @staticmethod
    def report_rows(final: dict[str, Any], split: str) -> list[str]:
        raise NotImplementedError

    @staticmethod
    def report_body(final: dict[str, Any]) -> list[str]:
        raise NotImplementedError


class Classify(Objective):
    name, score = "classify", "top1"

    def __init__(self, cfg: Config, classes: list[str]) -> None:
        d = cfg.data
        self.kind, self.classes = cfg.optim.loss, classes
        self.mixup = Mixup(d.mixup_alpha, d.cutmix_alpha, d.mixup_prob, d.mixup_switch_prob, d.label_smoothing,
                           len(classes))

    def loss(self, net, x, labels, gen, seed, autocast):
        x, target = self.mixup(x, labels, gen)
        with autocast:
            out = net(x)
        return soft_target_xent(out.float(), target, self.kind)

    def evaluate(self, model, ev):
        device = next(model.parameters()).device
        counts = evaluate_batches(model, ev.batches, self.classes, ev.autocast)
        counts.load_tensor(dd.all_sum(counts.as_tensor().to(device), ev.dist).cpu())
        return counts.summary()

    def scalars(self, s, split):
        return {f"{split}_top1": s["top1"], f"{split}_top5": s["top5"], f"{split}_loss": s["loss"]}

    def describe(self, s):
        return f"top-1 {s['top1']:.2f}% top-5 {s['top5']:.2f}% loss {s['loss']:.4f}"

    def final(self, s, test, split, best, run):
        return {"objective": self.name, "split": test, "top1": s["top1"], "top5": s["top5"], "loss": s["loss"],
                "per_class": s["per_class"], "n": s["n"], f"best_{split}_top1": best, **run,
                "confusion": s["confusion"]}

    @staticmethod
    def report_rows(final, split):
        return [f"| test top-1 | {final['top1']:.2f}% |", f"| test top-5 | {final['top5']:.2f}% |",
                f"| test loss | {final['loss']:.4f} |",
                f"| best per-epoch {split} top-1 | {final[f'best_{split}_top1']:.2f}% |"]

    @staticmethod
    def report_body(final):
        return ["## Per-class test accuracy", "", "| class | top-1 |", "|---|---|",
                *[f"| {c} | {a:.2f}% |" for c, a in final["per_class"].items()], "",
                "![curves](curves.png)", "", "![confusion](confusion.png)", ""]


class MaskedPatch(Objective):
    name, score, headless = "masked_patch", "masked_acc", True
    title = " (masked patch prediction, self-supervised)"

    def __init__(self, cfg: Config, classes: list[str]) -> None:
        self.module: nn.Module | None = None  # the MaskedPatchPredictor, once attached

    def attach(self, model):
        from ..models.masked import MaskedPatchPredictor, pixel_range

        mc = model.cfg  # targets are cut from the normalised images: colour levels span this normalisation
        self.module = MaskedPatchPredictor(model, pixel_range=pixel_range(mc.mean, mc.std, mc.in_chans))
        self.module.to(next(model.parameters()).device)
        self.mask_gen = torch.Generator(device=next(model.parameters()).device)  # reseeded per micro-batch
        return self.module

    def loss(self, net, x, labels, gen, seed, autocast):
        self.mask_gen.manual_seed(seed)
        with autocast:
            out = net(x, self.mask_gen)
        return F.cross_entropy(out.logits.float(), out.targets)

    @torch.inference_mode()
    def evaluate(self, model, ev):
        """Masked-patch cross-entropy and accuracy (%) over the corrupted patches of ``model``'s encoding;
        the corruption comes from a generator seeded by train.seed, so evaluations compare like with like."""
        device = next(model.parameters()).device
        gen = torch.Generator(device=device).manual_seed(ev.seed)
        was_training = self.module.training
        self.module.eval()
        total = torch.zeros(3, dtype=torch.float64, device=device)
        for x, _ in ev.batches:
            with torch.autocast(device.type, dtype=ev.autocast or torch.float32, enabled=ev.autocast is not None):
                out = self.module(x, gen, encoder=model)
            logits = out.logits.float()
            total[0] += F.cross_entropy(logits, out.targets, reduction="sum").double()
            total[1] += (logits.argmax(1) == out.targets).sum()
            total[2] += len(out.targets)
        self.module.train(was_training)
        total = dd.all_sum(total, ev.dist).cpu()
        n = max(float(total[2]), 1.0)
        return {"masked_loss": float(total[0]) / n, "masked_acc": 100.0 * float(total[1]) / n, "n": ev.n}

    def state_dict(self):
        """The [mask] embedding and head (the encoder is saved under "model")."""
        return {k: v for k, v in self.module.state_dict().items() if not k.startswith("model.")}

    def load_state_dict(self, state):
        missing, unexpected = self.module.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith("model.") for k in missing):
            raise ValueError(f"the checkpoint's masked-patch state does not fit: missing {missing}, unexpected {unexpected}")

    def scalars(self, s, split):
        return {f"{split}_masked_acc": s["masked_acc"], f"{split}_masked_loss": s["masked_loss"]}

    def describe(self, s):
        return f"masked-patch accuracy {s['masked_acc']:.2f}% loss {s['masked_loss']:.4f}"

    def final(self, s, test, split, best, run):
        return {"objective": self.name, "split": test, "masked_acc": s["masked_acc"],
                "masked_loss": s["masked_loss"], "n": s["n"], f"best_{split}_masked_acc": best, **run}

    @staticmethod
    def report_rows(final, split):
        return [f"| test masked-patch accuracy | {final['masked_acc']:.2f}% |",
                f"| test masked-patch loss | {final['masked_loss']:.4f} |",
                f"| best per-epoch {split} masked-patch accuracy | {final[f'best_{split}_masked_acc']:.2f}% |"]

    @staticmethod
    def report_body(final):
        return ["Pretext task: predict the 3-bit mean colour of each corrupted patch (paper appendix B.1.2). "
                "`model/` is the encoder alone: fine-tune it with `model.weights=<this run>/model`.", "",
                "![curves](curves.png)", ""]


OBJECTIVES: dict[str, type[Objective]] = {c.name: c for c in (Classify, MaskedPatch)}


def make_objective(cfg: Config, classes: list[str]) -> Objective:
    return OBJECTIVES[cfg.train.objective](cfg, classes)
