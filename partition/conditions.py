"""Conditions over time: link bandwidth, node speed and battery changing while a pipeline runs.

A topology may list them under ``conditions:`` (and ``tierpipe run/demo --conditions FILE``
takes the same list from a file of its own, which then wins)::

    conditions:
      - {at: 10 s, link: device->gateway, bandwidth: 2 Mbit/s}   # every device uplink
      - {at: 10 s, node: device-3, bandwidth: 1 Mbit/s}          # one node's uplink
      - {at: 20 s, node: gateway-1, speed: 0.2}                  # load from another job
      - {at: 30 s, node: device-0, battery: 15 %}

Times, bandwidths and battery levels are written with their units (``10 s``, ``2 Mbit/s``,
``15 %``); a bare number is an error (units.py), except ``at: 0``.

Emulation applies them at those times (seconds from the start of the stream); on real
machines they do not apply: real conditions are measured. :func:`changes_for` gives one node
its own timeline, later entries overriding earlier ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from .errors import TopologyError
from .units import quantity_type

__all__ = ["ConditionSpec", "check_conditions", "load_conditions", "changes_for", "FIELDS"]

FIELDS = ("bandwidth_mbps", "speed", "battery_pct")
MAX_CONDITIONS = 10_000

Seconds = Annotated[quantity_type("time_s"), Field(ge=0, le=1e7)]
Bandwidth = Annotated[quantity_type("bandwidth_mbps"), Field(gt=0)]
Percent = Annotated[quantity_type("percent"), Field(ge=0, le=100)]


class ConditionSpec(BaseModel):
    """One change: at ``at`` seconds, on one ``link`` (every node of its lower tier) or one ``node``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    at_s: Seconds = Field(alias="at")
    link: str | None = Field(None, pattern=r"^[^\s>-]+(-[^\s>-]+)*->[^\s>]+$", max_length=200)
    node: str | None = Field(None, max_length=200)
    bandwidth_mbps: Bandwidth | None = Field(None, alias="bandwidth")
    speed: float | None = Field(None, gt=0, le=1e6)
    battery_pct: Percent | None = Field(None, alias="battery")

    @property
    def what(self) -> tuple[str, float]:
        return next((f, getattr(self, f)) for f in FIELDS if getattr(self, f) is not None)


def check_conditions(topo, source: str, conditions: list[ConditionSpec], field: str = "conditions") -> None:
    """Named errors for conditions that do not fit ``topo`` (field path, valid names, the fix)."""
    if len(conditions) > MAX_CONDITIONS:
        raise TopologyError(f"{source}: {field}: {len(conditions):,} entries is over the limit of {MAX_CONDITIONS:,}")
    links = {f"{link.src}->{link.dst}": link for link in topo.links}
    nodes = {n: i for i, t in enumerate(topo.tiers) for n in t.node_names()}
    for i, c in enumerate(conditions):
        where = f"{source}: {field}[{i}]"
        if (c.link is None) == (c.node is None):
            raise TopologyError(
                f"{where}: give exactly one of 'link:' (e.g. {next(iter(links), 'device->gateway')}) or 'node:' (e.g. {next(iter(nodes))})"
            )
        given = [f for f in FIELDS if getattr(c, f) is not None]
        if len(given) != 1:
            raise TopologyError(
                f"{where}: give exactly one of 'bandwidth:', 'speed:' or 'battery:' per entry "
                f"(got {len(given)}); split it into several entries at the same time"
            )
        if c.link is not None:
            if c.link not in links:
                raise TopologyError(f"{where}.link: no link {c.link!r}; links are {sorted(links)}")
            if c.bandwidth_mbps is None:
                raise TopologyError(f"{where}: a link only changes its 'bandwidth:'; name a node for 'speed:' or 'battery:'")
        elif c.node not in nodes:
            close = sorted(nodes)[:8]
            raise TopologyError(f"{where}.node: no node named {c.node!r}; nodes are named <tier>-<index>, e.g. {close}")
        elif c.bandwidth_mbps is not None and nodes[c.node] >= topo.sink_index:
            raise TopologyError(f"{where}: {c.node!r} is on the sink tier and has no uplink whose bandwidth could change")


def load_conditions(path: str | Path, topo) -> list[ConditionSpec]:
    """The ``conditions:`` list of a YAML file of its own (``--conditions FILE``), checked against ``topo``.

    Raises:
        TopologyError: the file cannot be read, or an entry is malformed (named by file and index).
    """
    from .safe_yaml import load_yaml

    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise TopologyError(f"{path}: cannot read the conditions file ({exc}); check the path") from None
    data = load_yaml(text, str(path))
    items = data.get("conditions") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise TopologyError(
            f"{path}: expected a list of conditions (or a mapping with 'conditions:'), "
            "e.g. '- {at: 10 s, link: device->gateway, bandwidth: 2 Mbit/s}'"
        )
    out = []
    for i, item in enumerate(items):
        try:
            out.append(ConditionSpec.model_validate(item))
        except pydantic.ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(x) for x in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            raise TopologyError(f"{path}: conditions[{i}]{'.' + loc if loc else ''}: {msg}") from None
    check_conditions(topo, str(path), out)
    return out


def changes_for(conditions: list[ConditionSpec], topo, node: str) -> list[tuple[float, str, float]]:
    """``(at_s, field, value)`` changes that apply to ``node``, in time order (ties: file order).

    A link entry applies to every node of the link's lower tier (their uplinks); a node entry to
    that node only.

    >>> from partition import Topology
    >>> topo = Topology.load("three_tier")
    >>> changes_for([ConditionSpec(at="5 s", link="device->gateway", bandwidth="2 Mbit/s")], topo, "device-0")
    [(5.0, 'bandwidth_mbps', 2.0)]
    """
    tier_of = {n: t.name for t in topo.tiers for n in t.node_names()}
    out = []
    for i, c in enumerate(conditions):
        applies = c.node == node if c.node is not None else c.link.split("->")[0] == tier_of.get(node)
        if applies:
            out.append((c.at_s, i, *c.what))
    return [(at, f, v) for at, _, f, v in sorted(out)]
