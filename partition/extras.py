"""Optional dependencies, named with the extra that brings them.

The core install is what a stage node needs (torch, Ray, the wire codecs) plus what the driver
needs to plan and report. The smart-city demo's SUMO and plotting libraries come with the
``demo`` extra, Hugging Face models with ``hf``.

>>> missing(["json"]) == []
True
"""

from __future__ import annotations

import importlib.util

from partition.errors import TierpipeError

__all__ = ["EXTRAS", "MissingDependency", "missing", "require", "package_versions"]

# extra -> the importable modules it brings (pyproject.toml's [project.optional-dependencies])
EXTRAS = {
    "demo": ("libsumo", "sumolib", "matplotlib"),
    "hf": ("transformers",),
}


class MissingDependency(TierpipeError):
    """An optional dependency is not installed: names it and the extra that brings it."""


def missing(modules) -> list[str]:
    """The modules among ``modules`` that cannot be imported here (found without importing them)."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def require(extra: str, what: str) -> None:
    """Raise :class:`MissingDependency` unless every module of ``extra`` is installed.

    Args:
        extra: a key of :data:`EXTRAS`.
        what: what needs them, for the message (``"tierpipe demo"``).
    """
    absent = missing(EXTRAS[extra])
    if absent:
        raise MissingDependency(
            f"{what} needs {', '.join(absent)}, which the {extra!r} extra installs: "
            f"pip install 'tierpipe[{extra}]' (from a checkout: pip install -e '.[{extra}]')"
        )


def package_versions(packages=("tierpipe", "torch", "ray")) -> dict[str, str]:
    """Installed versions from the packages' metadata (nothing is imported); "not installed" where absent.

    >>> package_versions(("no-such-package-here",))
    {'no-such-package-here': 'not installed'}
    """
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in packages:
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "not installed"
    return out
