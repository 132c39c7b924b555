"""Human units in topology files ("20 Mbit/s", "512 MB", "5 ms"), converted once at load."""

from __future__ import annotations

import functools
import re

import pint

__all__ = ["parse_quantity"]

# base unit each kind converts to, and an example shown when a value does not parse
_KINDS = {
    "bandwidth_mbps": ("megabit / second", "20 Mbit/s"),
    "memory_mb": ("megabyte", "512 MB"),
    "time_ms": ("millisecond", "5 ms"),
    "time_s": ("second", "10 s"),
    "power_w": ("watt", "2 W"),
    "energy_nj_per_byte": ("nanojoule / byte", "100 nJ/B"),
    "percent": ("percent", "15 %"),
}


# a number, then a unit made of letters, '/', '%' and spaces: nothing pint would evaluate as an expression
_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d{1,3})?)\s*([A-Za-zµ/% ]{1,20})\s*$")


@functools.lru_cache(maxsize=1)
def _registry() -> pint.UnitRegistry:
    return pint.UnitRegistry()


def parse_quantity(value: object, kind: str) -> float:
    """Convert a number or a string with units into the base unit of ``kind``.

    Bare numbers are taken to be in the base unit already (Mbit/s, MB, ms).

    Args:
        value: ``20``, ``"20 Mbit/s"``, ``"1 Gbit/s"``, ``"512 MiB"``, ``"5 ms"``...
        kind: one of ``bandwidth_mbps``, ``memory_mb``, ``time_ms``, ``time_s``, ``power_w``, ``energy_nj_per_byte``, ``percent``.

    Returns:
        The magnitude in the base unit.

    Raises:
        ValueError: the string does not parse or has the wrong dimension.

    >>> parse_quantity("1 Gbit/s", "bandwidth_mbps")
    1000.0
    """
    unit, example = _KINDS[kind]
    if isinstance(value, bool):
        raise ValueError(f"expected a quantity like {example!r}, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a quantity like {example!r}, got {value!r}")
    match = _QUANTITY.match(value)
    if not match:
        raise ValueError(f"cannot read {value[:40]!r} as {unit}: write a number and a unit, like {example!r}")
    ureg = _registry()
    try:
        quantity = ureg.Quantity(float(match.group(1)), ureg.parse_units(match.group(2).strip()))
        return float(quantity.to(unit).magnitude)
    except Exception as exc:  # pint raises several unrelated types
        raise ValueError(f"cannot read {value!r} as {unit} ({exc.__class__.__name__}); write it like {example!r}") from None
