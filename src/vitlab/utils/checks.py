"""Small checks on recipe values shared by the recipe sections (data/recipe.py, train/config.py)."""
from __future__ import annotations


def check_choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    """A ValueError naming ``key``, its value and the allowed ones when ``value`` is not among them."""
    if value not in allowed:
        raise ValueError(f"{key}={value!r} is not one of {allowed}")
