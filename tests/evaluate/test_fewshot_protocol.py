"""The few-shot probe end to end against an independent scikit-learn implementation of the paper's
protocol (REFERENCE.md section 6): features standardised with the *train-shot* mean/std (+1e-5), a
constant feature 100 appended, targets 2*onehot-1, ridge with lambda 1024, arg-max."""
import numpy as np
import pytest
from sklearn.linear_model import Ridge

from vitlab.evaluate.fewshot import fewshot_eval, linear_probe_accuracy, linear_probe_scores, sample_shots


def sklearn_scores(train_x, train_y, test_x, num_classes):
    mean, std = train_x.mean(axis=0), train_x.std(axis=0)

    def design(x):
        z = (x - mean) / (std + 1e-5)
        return np.hstack([z, np.full((len(z), 1), 100.0)])

    targets = np.where(np.arange(num_classes)[None] == train_y[:, None], 1.0, -1.0)
    ridge = Ridge(alpha=1024.0, fit_intercept=False, solver="svd").fit(design(train_x), targets)
    return ridge.predict(design(test_x))


def sklearn_probe(train_x, train_y, test_x, test_y, num_classes):
    return float((sklearn_scores(train_x, train_y, test_x, num_classes).argmax(axis=1) == test_y).mean())


def problem(d: int, shots: int, seed: int = 0, classes: int = 4):
    """Overlapping classes, and a test set whose features are shifted and scaled relative to the shots
    (standardising it with its own statistics would move every point)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.0, size=(classes, d))
    centres[:, 0] += 6.0 * np.arange(classes)  # a large offset in one feature: the bias and scale matter
    train_y = np.repeat(np.arange(classes), shots)
    train_x = centres[train_y] + rng.normal(0.0, 1.5, size=(len(train_y), d))
    test_y = rng.integers(0, classes, 4000)
    test_x = centres[test_y] + rng.normal(0.0, 1.5, size=(len(test_y), d))
    return train_x, train_y, test_x, test_y


@pytest.mark.parametrize("d, shots", [(6, 10), (40, 5)])  # primal (d < n) and dual (d > n) ridge
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_probe_accuracy_equals_the_sklearn_protocol(d, shots, seed):
    train_x, train_y, test_x, test_y = problem(d, shots, seed)
    want = sklearn_probe(train_x, train_y, test_x, test_y, 4)
    assert 0.3 < want < 0.99  # neither trivial nor perfect: the predictions depend on every detail
    assert linear_probe_accuracy(train_x, train_y, test_x, test_y, 4) == pytest.approx(want, abs=1e-12)
    np.testing.assert_allclose(linear_probe_scores(train_x, train_y, test_x, 4),
                               sklearn_scores(train_x, train_y, test_x, 4), rtol=1e-7, atol=1e-9)


def test_unbalanced_shots_need_the_nearly_unregularised_bias():
    """With unequal class counts the per-class bias differs; a bias feature the penalty shrinks loses it."""
    train_x, train_y, test_x, _ = problem(6, 12, seed=3)
    keep = np.concatenate([np.flatnonzero(train_y == c)[: 3 + 3 * c] for c in range(4)])  # 3, 6, 9, 12 shots
    np.testing.assert_allclose(linear_probe_scores(train_x[keep], train_y[keep], test_x, 4),
                               sklearn_scores(train_x[keep], train_y[keep], test_x, 4), rtol=1e-7, atol=1e-9)


def test_fewshot_eval_probes_each_draw_of_the_shots():
    rng = np.random.default_rng(5)
    centres = rng.normal(0.0, 1.0, size=(3, 5))
    pool_y = np.repeat(np.arange(3), 30)
    pool_x = centres[pool_y] + rng.normal(0.0, 1.2, size=(90, 5))
    test_y = rng.integers(0, 3, 1500)
    test_x = centres[test_y] + rng.normal(0.0, 1.2, size=(1500, 5))
    results = fewshot_eval(pool_x, pool_y, test_x, test_y, shots=(2, 5), seeds=(0, 1, 2))
    assert [r.shots for r in results] == [2, 5]
    for r in results:
        want = []
        for seed in (0, 1, 2):
            idx = sample_shots(pool_y, r.shots, seed)
            assert np.bincount(pool_y[idx]).tolist() == [r.shots] * 3  # k of every class
            want.append(sklearn_probe(pool_x[idx], pool_y[idx], test_x, test_y, 3))
        assert r.accuracies == pytest.approx(want, abs=1e-12)
        assert r.mean == pytest.approx(np.mean(want)) and r.std == pytest.approx(np.std(want))
