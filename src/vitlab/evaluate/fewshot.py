"""Few-shot linear evaluation, the paper's cheap probe of a frozen representation (section 4.1).

For each of a few random draws of k examples per class: standardise the frozen pre-logits features with
the shots' own mean and std, append a constant feature of 100 (a bias the ridge penalty barely touches),
regress onto targets 2*onehot-1 in closed form with a fixed L2 penalty (1024), and classify the test set
by the arg-max of the regression output.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

L2_REG = 1024.0
BIAS_FEATURE = 100.0


@torch.inference_mode()
def extract_features(
    model: nn.Module, images: Tensor, transform, batch_size: int = 256, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Frozen representation (``forward_head(..., pre_logits=True)``) of a uint8 image batch, in chunks."""
    model.eval().to(device)
    out = []
    for i in range(0, len(images), batch_size):
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


def linear_probe_accuracy(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, num_classes: int,
    l2_reg: float = L2_REG,
) -> float:
    """Fit the closed-form ridge probe on (train_x, train_y) and return top-1 accuracy on the test set."""
    mean, std = train_x.mean(axis=0), train_x.std(axis=0)
    targets = 2.0 * np.eye(num_classes)[train_y] - 1.0
    w = ridge_fit(_design(train_x, mean, std), targets, l2_reg)
    pred = (_design(test_x, mean, std) @ w).argmax(axis=1)
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


def fewshot_eval(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
    shots: tuple[int, ...] = (1, 5, 10, 25), seeds: tuple[int, ...] = (0, 1, 2), l2_reg: float = L2_REG,
) -> list[FewShotResult]:
    """The paper's protocol over several shot counts and random draws of the shots."""
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    results = []
    for k in shots:
        accs = []
        for seed in seeds:
            idx = sample_shots(train_y, k, seed)
            accs.append(linear_probe_accuracy(train_x[idx], train_y[idx], test_x, test_y, num_classes, l2_reg))
        results.append(FewShotResult(k, accs))
    return results
