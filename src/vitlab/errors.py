"""vitlab's own exceptions: the problems a user can fix (a bad option, an unusable checkpoint).

``vitlab`` commands print these as one line and exit with status 2; any other exception is a bug and
keeps its traceback. Each subclasses the built-in type that callers caught before it existed, so
``except ValueError`` (or ``TypeError`` for an unknown keyword option) keeps working.
"""
from __future__ import annotations

import importlib
from types import ModuleType


class VitlabError(Exception):
    """Base class: a problem in what the user asked for, explained in the message."""


class ConfigError(VitlabError, ValueError):
    """A model option or recipe field that is missing, unknown or out of range."""


class UnknownOptionError(ConfigError, TypeError):
    """An option name the model's config class does not have (a TypeError, as for an unexpected keyword)."""


class CheckpointError(VitlabError, ValueError):
    """A checkpoint that cannot be found, read or fitted to the model asked for."""


class MissingDependencyError(VitlabError, ImportError):
    """An optional package (e.g. scikit-learn for the `digits` data set) is not installed; the message
    names what to pip install."""


def require(module: str, extra: str, package: str | None = None, needed_by: str | None = None) -> ModuleType:
    """Import an optional dependency, or raise MissingDependencyError naming the extra and the package to
    pip install, so a missing package is one line to act on instead of a traceback."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = package or module
        why = f" (needed by {needed_by})" if needed_by else ""
        raise MissingDependencyError(f"{package} is not installed{why}: pip install 'vitlab[{extra}]' "
                                     f"(or pip install {package})") from None


class NoTestSplitError(VitlabError, ValueError):
    """A data source without a test part was asked for its test split; a held-out split is made instead."""
