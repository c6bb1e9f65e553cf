"""The figures written into JSON reports (final.json, result.json, few-shot reports): floats at 7
significant digits, so a file says ``40.4``, not ``40.400000000000006``. Seven digits are float32's
precision, in which every model computes its loss, and keep a percentage's last unit of one in a million
images (99.99990%): no figure changes meaning."""
from __future__ import annotations

from typing import Any

DIGITS = 7


def rounded(value: Any, digits: int = DIGITS) -> Any:
    """``value`` with every float in it (at any depth of dicts, lists and tuples) rounded to ``digits``
    significant digits; everything else as it is."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    return value
