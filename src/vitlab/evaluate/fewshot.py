"""Few-shot linear evaluation, the paper's cheap probe of a frozen representation (section 4.1).

For each of a few random draws of k examples per class: standardise the frozen pre-logits features with
the shots' own mean and std, append a constant feature of 100 (a bias the ridge penalty barely touches),
regress onto targets 2*onehot-1 in closed form with a fixed L2 penalty (1024), and classify the test set
by the arg-max of the regression output.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..utils.figures import rounded

L2_REG = 1024.0
BIAS_FEATURE = 100.0


@torch.inference_mode()
def extract_features(
    model: nn.Module, images: Tensor, transform, batch_size: int = 256, device: str | torch.device = "cpu",
    progress: str | None = None,
) -> np.ndarray:
    """Frozen representation (``forward_head(..., pre_logits=True)``) of a uint8 image batch, in chunks;
    ``progress``: a label for a tqdm bar (None: silent)."""
    from tqdm import tqdm

    model.eval().to(device)
    out = []
    starts = range(0, len(images), batch_size)
    for i in tqdm(starts, desc=progress, unit="batch", disable=progress is None, leave=False):
        x = transform(images[i : i + batch_size]).to(device)
        out.append(model.forward_head(model.forward_features(x), pre_logits=True).float().cpu())
    return torch.cat(out).numpy().astype(np.float64)


def ridge_fit(x: np.ndarray, y: np.ndarray, l2_reg: float = L2_REG) -> np.ndarray:
    """Weights W minimising |xW - y|^2 + l2_reg |W|^2, in primal or dual form, whichever is smaller."""
    n, d = x.shape
    if d <= n:
        return np.linalg.solve(x.T @ x + l2_reg * np.eye(d), x.T @ y)
    return x.T @ np.linalg.solve(x @ x.T + l2_reg * np.eye(n), y)


def _design(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    x = (x - mean) / (std + 1e-5)
    return np.concatenate([x, np.full((len(x), 1), BIAS_FEATURE)], axis=1)


def linear_probe_scores(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, num_classes: int, l2_reg: float = L2_REG,
) -> np.ndarray:
    """Fit the closed-form ridge probe on (train_x, train_y); the regression outputs (N_test, num_classes)
    whose arg-max is the prediction (their values, not only the arg-max, pin the protocol down)."""
    mean, std = train_x.mean(axis=0), train_x.std(axis=0)
    targets = 2.0 * np.eye(num_classes)[train_y] - 1.0
    w = ridge_fit(_design(train_x, mean, std), targets, l2_reg)
    return _design(test_x, mean, std) @ w


def linear_probe_accuracy(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, num_classes: int,
    l2_reg: float = L2_REG,
) -> float:
    """Top-1 accuracy on the test set of the ridge probe fitted on (train_x, train_y)."""
    pred = linear_probe_scores(train_x, train_y, test_x, num_classes, l2_reg).argmax(axis=1)
    return float((pred == test_y).mean())


def sample_shots(labels: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """Indices of ``shots`` random examples of every class (a clear error if a class has too few)."""
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < shots:
            raise ValueError(f"class {c} has only {len(idx)} training examples, fewer than {shots} shots")
        picked.append(rng.choice(idx, shots, replace=False))
    return np.concatenate(picked)


@dataclass
class FewShotResult:
    shots: int
    accuracies: list[float]  # one per seed

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        """Spread over the seeds (population std: 0 for a single seed)."""
        return float(np.std(self.accuracies))

    def percent(self) -> dict[str, Any]:
        """A report's entry: accuracies in percent, at the figures' precision (vitlab.utils.figures)."""
        return rounded({"shots": self.shots, "mean": 100 * self.mean, "std": 100 * self.std,
                        "per_seed": [100 * a for a in self.accuracies]})


def fewshot_draws(labels: np.ndarray, shots: tuple[int, ...], seeds: tuple[int, ...]) -> dict[tuple[int, int], np.ndarray]:
    """The training indices of every (shots, seed) draw; drawn from the labels alone, so only the images
    they name need features."""
    return {(k, seed): sample_shots(labels, k, seed) for k in shots for seed in seeds}


def probe_draws(
    draws: dict[tuple[int, int], np.ndarray], train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
    test_y: np.ndarray, num_classes: int, l2_reg: float = L2_REG,
) -> list[FewShotResult]:
    """One ridge probe per draw (``draws`` index rows of ``train_x``), grouped by shot count."""
    by_shots: dict[int, list[float]] = {}
    for (k, _), idx in draws.items():
        acc = linear_probe_accuracy(train_x[idx], train_y[idx], test_x, test_y, num_classes, l2_reg)
        by_shots.setdefault(k, []).append(acc)
    return [FewShotResult(k, accs) for k, accs in by_shots.items()]


def fewshot_eval(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
    shots: tuple[int, ...] = (1, 5, 10, 25), seeds: tuple[int, ...] = (0, 1, 2), l2_reg: float = L2_REG,
) -> list[FewShotResult]:
    """The paper's protocol over several shot counts and random draws of the shots."""
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    return probe_draws(fewshot_draws(train_y, shots, seeds), train_x, train_y, test_x, test_y, num_classes, l2_reg)


def fewshot_checkpoint(
    ckpt: str | os.PathLike, data: str, split_train: str = "train", split_test: str = "test",
    shots: tuple[int, ...] = (1, 5, 10, 25), seeds: tuple[int, ...] = (0, 1, 2), max_test: int | None = None,
    data_dir: str | None = None, batch_size: int = 256, device: str | None = None, l2_reg: float = L2_REG,
    out: str | os.PathLike | None = None, progress: bool = True, checkpoint: str | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """The paper's few-shot probe of a checkpoint's frozen pre-logits features on a dataset.

    Images are preprocessed as the checkpoint's metadata says (EvalTransform.for_model: its Preprocess,
    mean, std, in_chans). The shots are drawn from the training labels first, so only those images are
    embedded; ``max_test`` evaluates on a fixed random subset of the test split. Accuracies are in
    percent; the report is also written as JSON to ``out`` when given. ``ckpt`` and ``checkpoint`` as for
    ``vitlab.load_model`` (e.g. a run directory and ``"best"``).
    """
    from ..data import EvalTransform, open_dataset
    from ..data.pipeline import default_workers, materialize
    from ..utils.device import pick_device
    from ..weights import load_model

    shots, seeds = tuple(int(k) for k in shots), tuple(int(s) for s in seeds)
    if not shots or min(shots) < 1 or not seeds:
        raise ValueError(f"need at least one shot count >= 1 and one seed, got shots={shots}, seeds={seeds}")
    if max_test is not None and max_test < 1:
        raise ValueError(f"max_test must be >= 1, got {max_test}")
    dev = pick_device(device)
    model = load_model(ckpt, checkpoint).to(dev)
    cfg = model.cfg
    train = open_dataset(data, split_train, data_dir, in_memory=False)  # folders: only the drawn files are read
    test = open_dataset(data, split_test, data_dir, in_memory=False)
    if list(train.classes) != list(test.classes):
        raise ValueError(f"{data}: splits {split_train!r} and {split_test!r} have different classes "
                         f"({list(train.classes)[:5]}... vs {list(test.classes)[:5]}...)")
    train_y = train.labels.numpy()
    draws = fewshot_draws(train_y, shots, seeds)  # raises before any model work if a class is too small
    used = np.unique(np.concatenate(list(draws.values())))
    rows = {key: np.searchsorted(used, idx) for key, idx in draws.items()}
    test_idx = np.arange(len(test))
    if max_test is not None and max_test < len(test):
        test_idx = np.sort(np.random.default_rng(0).permutation(len(test))[:max_test])

    tf = EvalTransform.for_model(cfg)
    label = "features" if progress else None
    workers = default_workers() if workers is None else workers
    train_images = materialize(train, tf, torch.as_tensor(used), workers)
    test_images = materialize(test, tf, torch.as_tensor(test_idx), workers)
    if train_images.skipped or test_images.skipped:
        bad = train_images.skipped + test_images.skipped
        raise ValueError(f"{len(bad)} image(s) of {data} could not be read, e.g. {bad[0][0]}: {bad[0][1]}; the probe "
                         "needs every drawn image: fix or remove them")
    train_x = extract_features(model, train_images.images, tf.normalize, batch_size, dev, label)
    test_x = extract_features(model, test_images.images, tf.normalize, batch_size, dev, label)
    results = probe_draws(rows, train_x, train_y[used], test_x, test.labels.numpy()[test_idx], train.num_classes, l2_reg)
    report = {
        "checkpoint": str(ckpt), "data": data, "split_train": split_train, "split_test": split_test,
        "num_classes": train.num_classes, "feature_dim": int(train_x.shape[1]), "train_images_embedded": len(used),
        "test_images": len(test_idx), "l2_reg": l2_reg, "seeds": list(seeds), "unit": "percent",
        "results": [r.percent() for r in results],
    }
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=2) + "\n")
    return report


def format_fewshot(report: dict[str, Any]) -> str:
    """The report as a table: one row per shot count, mean accuracy +- std over the seeds."""
    lines = [f"{report['checkpoint']}: {report['data']} few-shot linear probe ({report['feature_dim']}-d pre-logits, "
             f"{report['test_images']} {report['split_test']} images, {len(report['seeds'])} seed(s))",
             f"{'shots':>6}  {'accuracy':>16}"]
    lines += [f"{r['shots']:>6}  {r['mean']:7.2f}% ± {r['std']:5.2f}" for r in report["results"]]
    return "\n".join(lines)
