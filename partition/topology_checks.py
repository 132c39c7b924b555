"""The checks a topology file passes after parsing: pydantic's errors as one named line each, and
the semantics pydantic cannot check (unique names, links along the path, fan-in, sources,
conditions), each failure naming the file, the field and the fix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pydantic

from .conditions import check_conditions
from .errors import TopologyError

if TYPE_CHECKING:
    from .topology import Topology

__all__ = ["format_validation", "check_semantics", "fan_in"]

_FIXES = {
    "extra_forbidden": "remove it or check its spelling",
    "greater_than": "use a positive value",
    "greater_than_equal": "use a value that is not negative",
    "missing": "add it",
    "too_short": "add at least one entry",
}


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def format_validation(exc: pydantic.ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = _loc(tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))))
        msg = err["msg"].removeprefix("Value error, ")
        fix = _FIXES.get(err["type"], "")
        if err["type"] == "greater_than_equal" and (err.get("ctx") or {}).get("ge") == 1:
            fix = "use 1 or more"
        elif err["type"] == "less_than_equal":
            fix = f"use at most {(err.get('ctx') or {}).get('le')}"
        # a value error (units.py) already shows the value it refuses
        shown = err["type"] in ("missing", "value_error") or isinstance(err.get("input"), dict)
        got = "" if shown else f" (got {repr(err['input'])[:80]})"
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        lines.append(f"{source}: {loc}: {msg}{got}" + (f"; {fix}" if fix else ""))
    return "\n".join(lines)


def _fail(source: str, field: str, msg: str) -> None:
    raise TopologyError(f"{source}: {field}: {msg}")


def check_semantics(topo: Topology, source: str) -> None:
    names = [t.name for t in topo.tiers]
    for i, name in enumerate(names):
        if names.index(name) != i:
            _fail(source, f"tiers[{i}].name", f"tier {name!r} is listed twice; give every tier a unique name")
    for i, tier in enumerate(topo.tiers):
        if tier.speed is None and tier.gflops is None:
            _fail(source, f"tiers[{i}]", f"tier {tier.name!r} has no capacity; add 'speed:' (relative to this host, e.g. 0.1) or 'gflops:'")
    if topo.sink is not None and topo.sink not in names:
        _fail(source, "sink", f"no tier named {topo.sink!r}; tiers are {names}. Name one of them or add the tier")
    sink = names.index(topo.sink) if topo.sink else len(names) - 1
    for j, link in enumerate(topo.links):
        for end, tname in (("from", link.src), ("to", link.dst)):
            if tname not in names:
                _fail(
                    source, f"links[{j}].{end}", f"no tier named {tname!r} (missing tier); tiers are {names}. Add the tier or fix the name"
                )
        a, b = names.index(link.src), names.index(link.dst)
        if b <= a:
            _fail(
                source,
                f"links[{j}]",
                f"link {link.src} -> {link.dst} goes backwards or to itself; links go from a tier to the next one up, "
                f"e.g. {names[a]} -> {names[a + 1] if a + 1 < len(names) else '...'}",
            )
        if b != a + 1:
            _fail(
                source,
                f"links[{j}]",
                f"link {link.src} -> {link.dst} skips tier(s) {names[a + 1 : b]}; add a link for each consecutive pair instead",
            )
    seen_links: dict[tuple[str, str], int] = {}
    for j, link in enumerate(topo.links):
        if (link.src, link.dst) in seen_links:
            _fail(
                source,
                f"links[{j}]",
                f"link {link.src} -> {link.dst} is already listed as links[{seen_links[(link.src, link.dst)]}]; "
                "keep one link per pair of tiers",
            )
        seen_links[(link.src, link.dst)] = j
    have = {(lk.src, lk.dst) for lk in topo.links}
    for i in range(sink):
        if (names[i], names[i + 1]) not in have:
            _fail(
                source,
                "links",
                f"no link from {names[i]!r} to {names[i + 1]!r}; add one with 'from: {names[i]}', 'to: {names[i + 1]}', 'bandwidth:'",
            )
    order = {(lk.src, lk.dst): j for j, lk in enumerate(topo.links)}
    if sorted(order.values()) != [order[(names[i], names[i + 1])] for i in range(len(topo.links))]:
        _fail(source, "links", "list links in tier order, from the source tier up")
    all_nodes = {n: i for i, t in enumerate(topo.tiers) for n in t.node_names()}
    _check_fan_in(topo, source, all_nodes)
    for j, src in enumerate(topo.sources):
        for k, node in enumerate(src.nodes or []):
            if node not in all_nodes:
                _fail(source, f"sources[{j}].nodes[{k}]", f"no node named {node!r}; device nodes are {topo.tiers[0].node_names()}")
            if all_nodes[node] != 0:
                _fail(
                    source,
                    f"sources[{j}].nodes[{k}]",
                    f"{node!r} is on tier {names[all_nodes[node]]!r}; inputs are born on the first tier {names[0]!r}",
                )
    for node in topo.hosts:
        if node not in all_nodes:
            _fail(source, f"hosts.{node}", f"no node named {node!r}; nodes are named <tier>-<index>, e.g. {next(iter(all_nodes))}")
    check_conditions(topo, source, topo.conditions)


def _some(names: list[str], limit: int = 8) -> str:
    """A list of valid names for a message, shortened when long."""
    return ", ".join(names) if len(names) <= limit else f"{', '.join(names[:limit])}, ... ({len(names)} in all)"


def _check_fan_in(topo: Topology, source: str, all_nodes: dict[str, int]) -> None:
    names = [t.name for t in topo.tiers]
    for upper, lowers in topo.fan_in.items():
        if upper not in all_nodes:
            _fail(
                source,
                f"fan_in.{upper}",
                f"no node named {upper!r}; the nodes that can have a fan-in are {_some([n for n, i in all_nodes.items() if i > 0])}",
            )
        if all_nodes[upper] == 0:
            _fail(source, f"fan_in.{upper}", f"{upper!r} is on the first tier, which has no tier below it to feed it")
        for k, lower in enumerate(lowers):
            if lower not in all_nodes:
                _fail(
                    source,
                    f"fan_in.{upper}[{k}]",
                    f"no node named {lower!r}; the nodes of tier "
                    f"{names[all_nodes[upper] - 1]!r} are {_some(topo.tiers[all_nodes[upper] - 1].node_names())}",
                )
            if all_nodes[lower] != all_nodes[upper] - 1:
                _fail(
                    source,
                    f"fan_in.{upper}[{k}]",
                    f"{lower!r} is not on tier {names[all_nodes[upper] - 1]!r}, the tier right below {upper!r}",
                )
    for i in range(1, len(topo.tiers)):
        lower, upper = topo.tiers[i - 1], topo.tiers[i]
        explicit = {u: lk for u, lk in topo.fan_in.items() if all_nodes[u] == i}
        if not explicit:
            if lower.nodes % upper.nodes:
                _fail(
                    source,
                    "fan_in",
                    f"tier {lower.name!r} has {lower.nodes} nodes and {upper.name!r} {upper.nodes}; "
                    f"{lower.nodes} is not a multiple of {upper.nodes}, so list under 'fan_in:' which {lower.name} nodes "
                    f"feed each {upper.name} node",
                )
            continue
        seen: dict[str, str] = {}
        for u, ls in explicit.items():
            for lk in ls:
                if lk in seen:
                    _fail(source, f"fan_in.{u}", f"{lk!r} also feeds {seen[lk]!r}; every node feeds exactly one node of the tier above")
                seen[lk] = u
        missing = [n for n in lower.node_names() if n not in seen]
        if missing:
            _fail(
                source,
                "fan_in",
                f"fan-in does not add up: {len(seen)} of {lower.nodes} {lower.name} nodes are assigned; "
                f"{missing} feed no {upper.name} node. Add them to a fan_in list",
            )
        empty = [n for n in upper.node_names() if n not in explicit]
        if empty:
            _fail(
                source,
                "fan_in",
                f"fan-in does not add up: {empty} have no {lower.name} nodes; give each {upper.name} node a list or lower its count",
            )


def fan_in(topo: Topology) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for i in range(1, len(topo.tiers)):
        lower, upper = topo.tiers[i - 1], topo.tiers[i]
        explicit = {u: lk for u, lk in topo.fan_in.items() if u.rsplit("-", 1)[0] == upper.name}
        if explicit:
            out.update({u: list(lk) for u, lk in explicit.items()})
            continue
        per = lower.nodes // upper.nodes
        lows = lower.node_names()
        for k, u in enumerate(upper.node_names()):
            out[u] = lows[k * per : (k + 1) * per]
    return out
