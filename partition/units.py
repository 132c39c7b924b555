"""Human units in topology files ("20 Mbit/s", "512 MB", "5 ms"), converted once at load.

The rule: **a quantity is written with its unit.** A bare number (``bandwidth: 20000000``,
``latency: 4``, ``memory: 1024``, ``battery: 15``, or the string ``"20"``) is an error that
names the accepted units, never silently read in some base unit. One exception: a bare ``0``
is accepted for every kind, as zero is zero in every unit (``latency: 0``, ``at: 0``).

Each kind accepts a fixed list of spellings, so nothing is reinterpreted: ``bps``/``Mbps``
and ``b/s``/``Mb/s`` are bits per second (pint alone reads ``Mbps`` as mega-baud and
``Mb/s`` as megabarn per second), ``B/s``/``MB/s`` bytes per second; ``KB`` and ``Kbps``
are read as ``kB`` and ``kbps`` (decimal, like MB and GB here; write ``KiB`` for 1024
bytes); ``us``, ``µs`` and ``μs`` are microseconds; a percentage is written ``15 %``
(a bare 15 could mean 15 % or 0.15). Pint then converts the accepted unit to the kind's base.
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, SerializationInfo

__all__ = ["parse_quantity", "format_quantity", "quantity_type", "accepted_units", "bytes_per_s"]


def _spellings(prefixes: tuple[str, ...], forms: dict[str, str]) -> dict[str, str]:
    """``{spelling: pint unit}`` for every prefix on every form (``{"bps": "bit/s"}`` -> ``kbps: kbit/s``...)."""
    return {p + spelling: p + unit for p in prefixes for spelling, unit in forms.items()}


_SI = ("", "k", "M", "G", "T")
_IEC = ("Ki", "Mi", "Gi", "Ti")
_MICRO = {"us": "us", "µs": "us", "μs": "us"}  # ASCII u, micro sign U+00B5, Greek mu U+03BC

_BANDWIDTH = {
    **_spellings(_SI, {"bit/s": "bit/s", "b/s": "bit/s", "bps": "bit/s", "B/s": "B/s"}),
    **_spellings(_IEC, {"bit/s": "bit/s", "B/s": "B/s"}),
    "Kbit/s": "kbit/s",
    "Kb/s": "kbit/s",
    "Kbps": "kbit/s",
    "KB/s": "kB/s",
}
_MEMORY = {**_spellings(_SI, {"B": "B"}), **_spellings(_IEC, {"B": "B"}), "KB": "kB"}
_TIME = {"ns": "ns", **_MICRO, "ms": "ms", "s": "s", "min": "min", "h": "h"}
_POWER = {"uW": "uW", "µW": "uW", "μW": "uW", "mW": "mW", "W": "W", "kW": "kW"}
_ENERGY = {
    f"{e}/{d}": f"{j}/{d}"
    for e, j in (("pJ", "pJ"), ("nJ", "nJ"), ("uJ", "uJ"), ("µJ", "uJ"), ("μJ", "uJ"), ("mJ", "mJ"), ("J", "J"))
    for d in ("B", "bit")
}

# kind -> (base unit, example, what it is, {spelling: pint unit}, the spellings an error lists)
_KINDS = {
    "bandwidth_mbps": (
        "megabit / second",
        "20 Mbit/s",
        "a bandwidth",
        _BANDWIDTH,
        "bit/s, kbit/s, Mbit/s, Gbit/s, bps, kbps, Mbps, Gbps, B/s, kB/s, MB/s, GB/s",
    ),
    "memory_mb": ("megabyte", "512 MB", "a memory size", _MEMORY, "B, kB, MB, GB, TB, KiB, MiB, GiB, TiB"),
    "time_ms": ("millisecond", "5 ms", "a time", _TIME, "ns, us, µs, ms, s"),
    "time_s": ("second", "10 s", "a time", _TIME, "ms, s, min, h"),
    "power_w": ("watt", "2 W", "a power", _POWER, "uW, mW, W, kW"),
    "energy_nj_per_byte": ("nanojoule / byte", "100 nJ/B", "an energy per byte", _ENERGY, "pJ/B, nJ/B, uJ/B, nJ/bit, pJ/bit"),
    "percent": ("percent", "15 %", "a percentage", {"%": "percent", "percent": "percent"}, "%"),
}
# the unit a base-unit number is written with when dumped (format_quantity)
_BASE_SPELLING = {
    "bandwidth_mbps": "Mbit/s",
    "memory_mb": "MB",
    "time_ms": "ms",
    "time_s": "s",
    "power_w": "W",
    "energy_nj_per_byte": "nJ/B",
    "percent": "%",
}

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d{1,3})?"
_BARE = re.compile(rf"^\s*{_NUMBER}\s*$")
# a number, then a unit made of letters, '/', '%' and spaces: nothing pint would evaluate as an expression
_QUANTITY = re.compile(rf"^\s*({_NUMBER})\s*([A-Za-zµμ/% ]{{1,20}})\s*$")


@functools.lru_cache(maxsize=1)
def _registry():
    import pint  # only when a conversion factor is not known yet (see _factor)

    # pint parses its definitions file on every start (0.2 s); its own cache folder makes that 10x faster
    try:
        return pint.UnitRegistry(cache_folder=":auto:")
    except Exception:  # an unwritable cache folder: parse every time
        return pint.UnitRegistry()


# pint's answers, kept between runs: every accepted spelling converts to its kind's base unit by a
# constant factor, so a later start (``tierpipe topology check``) needs neither pint's import nor its registry
_FACTORS_FILE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tierpipe" / "unit_factors.json"


@functools.lru_cache(maxsize=1)
def _known_factors() -> dict[str, float]:
    try:
        return {k: float(v) for k, v in json.loads(_FACTORS_FILE.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _factor(unit: str, base: str) -> float:
    """How many ``base`` one ``unit`` is (``"Gbit/s"`` -> ``"megabit / second"``: 1000.0), asked of pint
    once per pair and machine."""
    known, key = _known_factors(), f"{unit} -> {base}"
    if key not in known:
        ureg = _registry()
        known[key] = float(ureg.Quantity(1.0, ureg.parse_units(unit)).to(base).magnitude)
        try:
            _FACTORS_FILE.parent.mkdir(parents=True, exist_ok=True)
            tmp = _FACTORS_FILE.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(known, indent=0, sort_keys=True))
            tmp.replace(_FACTORS_FILE)  # atomic: two processes never leave half a file
        except OSError:  # a read-only home: pint is asked again next time
            pass
    return known[key]


def accepted_units(kind: str) -> str:
    """The unit spellings an error message lists for ``kind`` (``"bit/s, kbit/s, ..."``)."""
    return _KINDS[kind][4]


def parse_quantity(value: object, kind: str) -> float:
    """Convert a string with a unit into the base unit of ``kind``.

    A bare number (``20``, ``4.5``, ``"20"``) is refused: it has no unit, and guessing one is how
    20000000 bit/s became 2e7 Mbit/s. Only ``0`` needs none.

    Args:
        value: ``"20 Mbit/s"``, ``"1 Gbps"``, ``"512 MiB"``, ``"5 ms"``, ``"15 %"``... or ``0``.
        kind: one of ``bandwidth_mbps``, ``memory_mb``, ``time_ms``, ``time_s``, ``power_w``, ``energy_nj_per_byte``, ``percent``.

    Returns:
        The magnitude in the base unit (Mbit/s, MB, ms, s, W, nJ/B, %).

    Raises:
        ValueError: a bare number, a string that does not parse, or a unit that is not one of the
            kind's (the message shows the value, an example and the accepted units).

    >>> parse_quantity("1 Gbit/s", "bandwidth_mbps")
    1000.0
    >>> parse_quantity("20 Mbps", "bandwidth_mbps")
    20.0
    """
    base, example, what, units, listed = _KINDS[kind]
    accepted = f"(accepted: {listed})"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f'expected {what} with its unit, e.g. "{example}"; got {value!r} {accepted}')
    if isinstance(value, (int, float)) or _BARE.match(value):
        if (float(value) if isinstance(value, str) else value) == 0:
            return 0.0
        shown = value.strip()[:40] if isinstance(value, str) else repr(value)
        raise ValueError(f'{shown} has no unit; write it with one, e.g. "{example}" {accepted}')
    match = _QUANTITY.match(value)
    if not match:
        raise ValueError(f'cannot read {value[:40]!r} as {what}: write a number and a unit, e.g. "{example}" {accepted}')
    number, unit = float(match.group(1)), "".join(match.group(2).split())
    if unit not in units:
        other = next((w for _, _, w, u, _ in _KINDS.values() if unit in u), None)
        why = f"{unit} is a unit for {other}, not for {what}" if other and other != what else f"unknown unit {unit!r} for {what}"
        raise ValueError(f'{value!r}: {why}; write it like "{example}" {accepted}')
    try:
        return number * _factor(units[unit], base)
    except Exception as exc:  # pint raises several unrelated types; every listed spelling converts
        raise ValueError(f'cannot read {value!r} as {what} ({exc.__class__.__name__}); write it like "{example}"') from None


def format_quantity(value: float, kind: str) -> str:
    """A base-unit number written with its unit, so that :func:`parse_quantity` reads it back exactly.

    >>> format_quantity(20.0, "bandwidth_mbps"), format_quantity(2147.483648, "memory_mb")
    ('20 Mbit/s', '2147.483648 MB')
    """
    text = f"{value:g}" if float(f"{value:g}") == value else repr(float(value))
    return f"{text} {_BASE_SPELLING[kind]}"


def quantity_type(kind: str):
    """The pydantic type of a field holding a ``kind`` quantity: a float in the base unit.

    Read with :func:`parse_quantity`; dumped with ``by_alias=True`` (the human keys, as in the
    YAML) it is written with its unit (``bandwidth: "20 Mbit/s"``), so that a dump loads back;
    a plain dump keeps the number under the field's name, which carries the unit (``bandwidth_mbps``).
    """

    def dump(value: float, info: SerializationInfo) -> float | str:
        return format_quantity(value, kind) if info.by_alias else value

    return Annotated[float, BeforeValidator(functools.partial(parse_quantity, kind=kind)), PlainSerializer(dump)]


def bytes_per_s(mbps: float) -> float:
    """A link's rate in bytes per second from Mbit/s (the unit topologies are converted to).

    >>> bytes_per_s(8.0)
    1000000.0
    """
    return mbps * 1e6 / 8
