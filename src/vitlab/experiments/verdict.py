"""The written verdict rule: a claim is a list of checks on estimates; each check's outcome follows from the
difference and its standard error, never from a judgement call.

An ``Estimate`` is a mean accuracy (percent) with a standard error that takes the larger of two noise
sources: the spread over seeds (sample std / sqrt(seeds), when there are >= 2; for a few-shot probe every
seed's every draw of the shots is a sample) and the binomial sampling
error of an accuracy measured on ``n`` test images (sqrt(p (1 - p) / n)). With one seed only the second
is known, so a single run is never treated as noise-free.

Rule (Z = 2, about a 95% two-sided interval):
- ``greater(a, b)``: a - b > Z * se  -> agrees;  a - b < -Z * se -> disagrees;  otherwise inconclusive.
- ``similar(a, b)``: |a - b| <= Z * se -> agrees;  otherwise disagrees (a clear difference).
- a claim of several checks agrees when every check agrees, disagrees when any disagrees, and is
  inconclusive otherwise.
where se = sqrt(se_a^2 + se_b^2) is the standard error of the difference.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

Z = 2.0
OUTCOMES = ("agrees", "disagrees", "inconclusive")


@dataclass(frozen=True)
class Estimate:
    """A mean (percent) with its standard error; differences of independent estimates add variances."""

    mean: float
    se: float

    def __sub__(self, other: Estimate) -> Estimate:
        return Estimate(self.mean - other.mean, math.hypot(self.se, other.se))

    @classmethod
    def of(cls, values: Sequence[float], n: int | None = None) -> Estimate:
        """From per-seed accuracies (percent); ``n``: test images behind each (binomial floor on the error)."""
        if not values:
            raise ValueError("an estimate needs at least one value")
        k = len(values)
        mean = sum(values) / k
        seed_se = math.sqrt(sum((v - mean) ** 2 for v in values) / (k - 1) / k) if k > 1 else 0.0
        p = min(max(mean / 100.0, 0.0), 1.0)
        binom_se = 100.0 * math.sqrt(p * (1 - p) / n) if n else 0.0
        return cls(mean, max(seed_se, binom_se))


@dataclass(frozen=True)
class Check:
    """One testable part of a claim: ``a`` vs ``b`` (named), the difference, its error and the outcome."""

    text: str
    kind: str  # greater | similar
    a: str
    b: str
    diff: float
    se: float
    outcome: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def greater(text: str, a: str, ea: Estimate, b: str, eb: Estimate) -> Check:
    """The claim ``a > b``: outside +-Z standard errors either way it is decided, inside it is not."""
    d = ea - eb
    outcome = "agrees" if d.mean > Z * d.se else "disagrees" if d.mean < -Z * d.se else "inconclusive"
    return Check(text, "greater", a, b, d.mean, d.se, outcome)


def similar(text: str, a: str, ea: Estimate, b: str, eb: Estimate) -> Check:
    """The claim ``a ~ b``: agrees when the difference is within the noise, disagrees when it is clearly not."""
    d = ea - eb
    return Check(text, "similar", a, b, d.mean, d.se, "agrees" if abs(d.mean) <= Z * d.se else "disagrees")


def combine(checks: Sequence[Check]) -> str:
    """Every check agrees -> agrees; any disagrees -> disagrees; else inconclusive."""
    if not checks:
        raise ValueError("a verdict needs at least one check")
    outcomes = {c.outcome for c in checks}
    if "disagrees" in outcomes:
        return "disagrees"
    return "agrees" if outcomes == {"agrees"} else "inconclusive"
