"""SUMO configuration files (``.sumocfg``): the network, routes, additional files and time window they name.

>>> seconds("1:00:00", Path("x.sumocfg"), "end")
3600.0
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from partition.errors import TierpipeError

__all__ = ["ScenarioError", "read_config", "routes_end_s", "seconds"]


class ScenarioError(TierpipeError):
    """A SUMO scenario that cannot be used: names the file and what to change."""


def read_config(path: Path) -> tuple[Path, list[Path], list[Path], float, float]:
    """net, routes, additional files, begin and end from a SUMO configuration file."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ScenarioError(
            f"{path}: not a SUMO configuration ({exc}); expected <configuration> with <input><net-file value=.../>"
        ) from None

    def value(tag: str) -> str | None:
        el = root.find(f".//{tag}")
        return None if el is None else el.get("value")

    net = value("net-file")
    if not net:
        raise ScenarioError(f"{path}: no <net-file value=...> in <input>; name the network there")
    routes = [p for p in (value("route-files") or "").replace(",", " ").split() if p]
    if not routes:
        raise ScenarioError(f"{path}: no <route-files value=...> in <input>; tierpipe needs the demand to simulate")
    extra = [p for p in (value("additional-files") or "").replace(",", " ").split() if p]
    base = path.parent
    begin = seconds(value("begin") or "0", path, "begin")
    end_v = value("end")
    routes_p = [base / r for r in routes]
    end = seconds(end_v, path, "end") if end_v is not None else -1.0
    end = end if end > 0 else (routes_end_s(routes_p) or 3600.0)
    return base / net, routes_p, [base / a for a in extra], begin, end


def seconds(text: str, path: Path, field: str) -> float:
    """SUMO's time values: seconds (``3600``, ``3600.5``) or ``h:m:s`` / ``d:h:m:s``."""
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        raise ScenarioError(f"{path}: <{field} value={text!r}> is not a time; write seconds (3600) or h:m:s (1:00:00)") from None
    units = (86400.0, 3600.0, 60.0, 1.0)[-len(parts) :] if len(parts) <= 4 else ()
    if not units:
        raise ScenarioError(f"{path}: <{field} value={text!r}> has too many parts; write seconds or d:h:m:s")
    return sum(p * u for p, u in zip(parts, units))


def routes_end_s(routes: list[Path]) -> float | None:
    """The latest ``end`` of a flow or ``depart`` of a vehicle/trip in the route files (their window)."""
    last = None
    for path in routes:
        if not path.exists():
            continue
        for _, el in ET.iterparse(path):
            t = el.get("end") if el.tag == "flow" else el.get("depart") if el.tag in ("vehicle", "trip") else None
            try:
                last = max(last or 0.0, float(t)) if t is not None else last
            except ValueError:
                pass
            el.clear()
    return last
