import numpy as np
import pytest
from sklearn.linear_model import Ridge

from vitlab.evaluate.fewshot import (
    BIAS_FEATURE,
    _design,
    fewshot_eval,
    linear_probe_accuracy,
    ridge_fit,
    sample_shots,
)


@pytest.mark.parametrize("n,d", [(50, 8), (8, 50)])  # primal and dual forms
def test_ridge_fit_matches_sklearn(n, d):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(n, d)), rng.normal(size=(n, 3))
    ref = Ridge(alpha=1024.0, fit_intercept=False, solver="cholesky").fit(x, y).coef_.T
    np.testing.assert_allclose(ridge_fit(x, y, 1024.0), ref, rtol=1e-8, atol=1e-10)


def test_design_standardises_and_appends_bias():
    x = np.random.default_rng(1).normal(3.0, 2.0, size=(40, 5))
    z = _design(x, x.mean(0), x.std(0))
    np.testing.assert_allclose(z[:, :5].mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(z[:, :5].std(0), 1, atol=1e-4)
    assert (z[:, 5] == BIAS_FEATURE).all()


def test_probe_separates_separable_classes_and_not_noise():
    rng = np.random.default_rng(2)
    centers = rng.normal(scale=5.0, size=(4, 16))
    ytr, yte = np.repeat(np.arange(4), 10), np.repeat(np.arange(4), 50)
    xtr = centers[ytr] + rng.normal(size=(40, 16))
    xte = centers[yte] + rng.normal(size=(200, 16))
    assert linear_probe_accuracy(xtr, ytr, xte, yte, 4) > 0.95
    noise = rng.normal(size=(200, 16))  # features carry no label information -> near chance
    assert linear_probe_accuracy(xtr, ytr, noise, yte, 4) < 0.5


def test_shots_per_class_and_seeds():
    labels = np.repeat(np.arange(3), 7)
    idx = sample_shots(labels, 5, seed=0)
    assert sorted(np.bincount(labels[idx])) == [5, 5, 5]
    assert not np.array_equal(idx, sample_shots(labels, 5, seed=1))
    with pytest.raises(ValueError, match="fewer than 10 shots"):
        sample_shots(labels, 10, seed=0)


def test_fewshot_eval_reports_every_shot_and_seed():
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(3), 30)
    x = np.eye(3)[y] * 4 + rng.normal(size=(90, 3))
    res = fewshot_eval(x, y, x, y, shots=(1, 5), seeds=(0, 1, 2))
    assert [r.shots for r in res] == [1, 5] and all(len(r.accuracies) == 3 for r in res)
    assert res[1].mean > 0.9
