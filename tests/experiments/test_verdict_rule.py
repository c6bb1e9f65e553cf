"""The written verdict rule on hand-made numbers: agree, disagree, inconclusive."""
from __future__ import annotations

import math

import pytest

from vitlab.experiments import Estimate, combine, greater, similar


def test_estimate_takes_the_larger_of_seed_spread_and_binomial_error():
    e = Estimate.of([80.0, 82.0, 84.0], n=10_000)
    assert e.mean == pytest.approx(82.0)
    assert e.se == pytest.approx(2.0 / math.sqrt(3))  # seed std 2, three seeds: larger than the binomial 0.38
    one = Estimate.of([90.0], n=100)
    assert one.se == pytest.approx(100 * math.sqrt(0.9 * 0.1 / 100))  # one seed: the binomial floor, 3.0
    assert Estimate.of([50.0]).se == 0.0
    with pytest.raises(ValueError, match="at least one"):
        Estimate.of([])


def test_greater_agrees_disagrees_or_is_inconclusive():
    b = Estimate(80.0, 0.5)
    assert greater("a > b", "a", Estimate(82.0, 0.5), "b", b).outcome == "agrees"  # +2.0 > 2 x 0.71
    assert greater("a > b", "a", Estimate(78.0, 0.5), "b", b).outcome == "disagrees"
    assert greater("a > b", "a", Estimate(80.9, 0.5), "b", b).outcome == "inconclusive"  # within the spread
    c = greater("a > b", "a", Estimate(81.0, 0.3), "b", Estimate(80.0, 0.4))
    assert c.diff == pytest.approx(1.0) and c.se == pytest.approx(0.5)


def test_similar_agrees_within_noise_and_disagrees_outside():
    a = Estimate(64.2, 0.3)
    assert similar("a ~ b", "a", a, "b", Estimate(64.0, 0.3)).outcome == "agrees"
    assert similar("a ~ b", "a", a, "b", Estimate(61.4, 0.3)).outcome == "disagrees"


def test_differences_of_estimates_combine_errors():
    gap_small = Estimate(70.0, 1.0) - Estimate(60.0, 1.0)
    gap_large = Estimate(88.0, 0.3) - Estimate(87.0, 0.4)
    assert gap_small.se == pytest.approx(math.sqrt(2)) and gap_large.mean == pytest.approx(1.0)
    assert greater("gap shrinks", "small", gap_small, "large", gap_large).outcome == "agrees"


def test_combine():
    def chk(outcome: str):
        lookup = {"agrees": (5.0, 0.0), "disagrees": (-5.0, 0.0), "inconclusive": (0.1, 0.0)}
        m, _ = lookup[outcome]
        return greater("x", "a", Estimate(50 + m, 1.0), "b", Estimate(50.0, 1.0))

    assert combine([chk("agrees"), chk("agrees")]) == "agrees"
    assert combine([chk("agrees"), chk("inconclusive")]) == "inconclusive"
    assert combine([chk("agrees"), chk("inconclusive"), chk("disagrees")]) == "disagrees"
    with pytest.raises(ValueError):
        combine([])


def test_learning_rate_is_chosen_on_dev_accuracy_then_dev_loss_never_test():
    from vitlab.experiments.catalog import _best_lr, _lr_arm
    from vitlab.experiments.core import Results

    def row(lr, dev, loss, test):
        return {"arm": _lr_arm("ft", lr), "metrics": {"dev_top1": dev, "dev_loss": loss, "top1": test, "n": 100}}

    res = Results([row(0.01, 80.0, 0.9, 60.0), row(0.03, 84.0, 0.7, 50.0), row(0.1, 84.0, 0.5, 40.0)])
    assert _best_lr(res, "ft", [0.01, 0.03, 0.1]) == 0.1  # tie on dev top-1 -> lower dev loss; test ignored
    res = Results([row(0.01, 88.0, 0.9, 60.0), row(0.03, 84.0, 0.1, 90.0)])
    assert _best_lr(res, "ft", [0.01, 0.03]) == 0.01
