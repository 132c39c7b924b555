"""The constraints of a request as plain arrays: per-node tier bounds and per-tier memory budgets.

Pins, ``keep_input_on`` and "inputs are born on the source tier" become lowest/highest tier
per node, propagated along the edges (values only move toward the sink); a contradiction is
named with the node, its module and the constraints that clash.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

import numpy as np

from .errors import PartitionError
from .graph import Graph
from .mincut import propagate_bounds
from .solution import Request
from .topology import Topology

__all__ = ["tier_bounds", "memory_budget", "make_request"]


def tier_bounds(
    graph: Graph, topology: Topology, keep_input_on: str | None, pins: Mapping[str, str] | None, not_before: Mapping[str, str] | None = None
):
    names = [t.name for t in topology.path]
    n, k = len(graph.nodes), len(names)
    lo = np.zeros(n, dtype=int)
    hi = np.full(n, k - 1, dtype=int)
    why_hi = [""] * n
    why_lo = [""] * n

    def tier(name: str, what: str) -> int:
        if name not in names:
            raise PartitionError(f"{what}: no tier {name!r} on the path {names}; use one of them")
        return names.index(name)

    for i in graph.inputs:
        hi[graph.index[i]] = 0
        why_hi[graph.index[i]] = "inputs are born on the source tier"
    if keep_input_on is not None:
        j = tier(keep_input_on, "keep_input_on")
        for i in graph.inputs:
            for c in graph.consumers[i]:
                v = graph.index[c]
                if j < hi[v]:
                    hi[v], why_hi[v] = j, f"keep_input_on={keep_input_on}"

    def nodes_at(path: str, what: str) -> list[int]:
        hits = [v for v, node in enumerate(graph.nodes) if node.name == path or node.module == path or node.module.startswith(path + ".")]
        if not hits:
            modules = sorted(
                {".".join(node.module.split(".")[:d]) for node in graph.nodes if node.module for d in range(1, node.module.count(".") + 2)}
            )
            close = difflib.get_close_matches(path, modules, n=3)
            raise PartitionError(
                f"{what} {path!r}: no node or module of that path in the model"
                + (f"; did you mean {close}?" if close else f"; module paths look like {modules[:3]}")
            )
        return hits

    for path, tname in (pins or {}).items():
        j = tier(tname, f"pin {path!r}")
        for v in nodes_at(path, "pin"):
            lo[v], hi[v] = max(lo[v], j), min(hi[v], j)
            why_lo[v] = why_hi[v] = f"pin {path}={tname}"
    for path, tname in (not_before or {}).items():
        j = tier(tname, f"not_before {path!r}")
        for v in nodes_at(path, "not_before"):
            if j > lo[v]:
                lo[v], why_lo[v] = j, f"not_before {path}={tname}"
    preds = [[graph.index[i] for i in node.inputs] for node in graph.nodes]
    succs = [[graph.index[c] for c in graph.consumers[node.name]] for node in graph.nodes]
    plo, phi = propagate_bounds(preds, succs, lo, hi)
    bad = np.flatnonzero(plo > phi)
    if len(bad):
        v = int(bad[0])
        name = graph.nodes[v].name
        own = why_lo[v] or why_hi[v] or "none of its own"
        raise PartitionError(
            f"constraints contradict each other at node {name!r} ({graph.nodes[v].module or 'top level'}): "
            f"it must run on tier >= {names[plo[v]]!r} and <= {names[phi[v]]!r}, since values only move "
            f"toward the sink (its own constraint: {own}; the rest comes from the nodes it reads or feeds). "
            f"Drop or move one of the pins {list((pins or {}).items())}"
            + (f" or not_before {list(not_before.items())}" if not_before else "")
            + (f" or keep_input_on={keep_input_on}" if keep_input_on else "")
        )
    return plo, phi


def memory_budget(topology: Topology, enabled: bool) -> np.ndarray:
    return np.array([t.memory_mb * 1e6 if enabled else np.inf for t in topology.path])


def make_request(
    graph: Graph,
    topology: Topology,
    objective: str,
    keep_input_on: str | None = None,
    pins: Mapping[str, str] | None = None,
    latency_slo_ms: float | None = None,
    memory: bool = True,
    orders: int = 8,
    not_before: Mapping[str, str] | None = None,
) -> Request:
    lo, hi = tier_bounds(graph, topology, keep_input_on, pins, not_before)
    return Request(objective, lo, hi, memory_budget(topology, memory), latency_slo_ms / 1e3 if latency_slo_ms is not None else None, orders)
