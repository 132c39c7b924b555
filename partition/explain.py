"""What a plan answers: is the demand met, why the cut is where it is, and how it compares.

- :class:`Demand`: the topology's streams (``sources:``, count x fps) against the frames/s the plan
  sustains; its bottleneck is the resource with the highest load at that demand.
- :func:`next_best`: the best plan next to the chosen one that differs from it, among moving one
  tier boundary to any position of the capture order (every single-cut alternative per link) and
  moving one op across a boundary. Deterministic: candidates in a fixed order, ties by that order.
- :func:`summary_lines` and :func:`plan_tables`: the text ``tierpipe partition`` prints.

No Ray here: a plan's figures, and the :class:`~partition.pricing.Problem` it was solved on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np

from .pricing import Cost, Problem
from .solution import Request, objective_value, ranking_key

if TYPE_CHECKING:
    from .plan import Plan
    from .topology import Topology

__all__ = ["Demand", "Alternative", "demand_of", "stream_demand", "next_best", "compare_line", "summary_lines", "plan_tables"]


@dataclass(frozen=True)
class Demand:
    """The streams' frames/s against what a plan sustains at the same mix of streams."""

    demand_fps: float  # all streams together
    capacity_fps: float  # all streams together, each stream's share as in the demand
    streams: str  # "3 streams x 10 fps"
    bottleneck: str  # the resource with the highest load: "tier gateway compute", "link device->gateway"

    @property
    def met(self) -> bool:
        return self.capacity_fps >= self.demand_fps * (1 - 1e-9)

    @property
    def headroom(self) -> float:
        """capacity / demand: 1.6 = 60% to spare, 0.62 = capacity is 62% of the demand."""
        return self.capacity_fps / self.demand_fps

    def line(self) -> str:
        """``demand 30.0 frames/s (3 streams x 10 fps); predicted capacity 48.2 frames/s: met, 1.61x headroom ...``"""
        cap = "unbounded" if math.isinf(self.capacity_fps) else f"{self.capacity_fps:.1f} frames/s"
        head = f"demand {self.demand_fps:.1f} frames/s ({self.streams}); predicted capacity {cap}"
        if self.met:
            return f"{head}: met, {self.headroom:.2f}x headroom (bottleneck: {self.bottleneck})"
        return f"{head}: not met: capacity is {self.headroom:.0%} of demand; bottleneck: {self.bottleneck}"


@dataclass(frozen=True)
class Alternative:
    """A plan next to the chosen one: what differs, the ops that move (op -> its tier there), its cost.

    ``{**plan.assignment, **alt.moved}`` with ``alt.codecs`` is the whole plan (:func:`partition.pricing`).
    """

    change: str
    moved: dict[str, str]
    codecs: tuple[str, ...]
    cost: Cost

    @classmethod
    def from_json(cls, d: dict) -> Alternative:
        return cls(d["change"], dict(d["moved"]), tuple(d["codecs"]), Cost.from_json(d["cost"]))


# ---------------------------------------------------------------------------------------------- demand
def stream_demand(topology: Topology) -> dict:
    """``input_streams`` (per source: name, count, fps) and ``tier_load_fps`` (per tier on the path: the
    frames/s its busiest node serves) of ``topology``; both empty when it lists no ``sources:``."""
    if not topology.sources:
        return {"input_streams": (), "tier_load_fps": ()}
    device = topology.tiers[0].node_names()
    groups, fps_of_stream = [], []
    for spec in topology.sources:
        count = spec.count or len(spec.nodes or device)
        groups.append({"name": spec.name, "count": count, "fps": float(spec.fps)})
        fps_of_stream += [float(spec.fps)] * count
    load: dict[str, float] = {}
    for node, fps in zip(topology.source_nodes(), fps_of_stream):
        load[node] = load.get(node, 0.0) + fps
    for tier in topology.tiers[1:]:
        for node in tier.node_names():
            load[node] = sum(load.get(c, 0.0) for c in topology.children.get(node, []))
    return {
        "input_streams": tuple(groups),
        "tier_load_fps": tuple(max(load.get(n, 0.0) for n in tier.node_names()) for tier in topology.path),
    }


def demand_of(plan: Plan, cost: Cost | None = None) -> Demand | None:
    """The demand of the plan's streams against ``cost`` (default: the plan's own); None when the
    topology listed no ``sources:`` (or the plan was saved before plans carried them).

    Each busy resource (a node's compute, a node's uplink) works ``load_fps x seconds per frame`` seconds
    per second; the capacity is the demand divided by the highest such load.
    """
    cost = cost or plan.predicted
    if not plan.input_streams or len(plan.tier_load_fps) != len(plan.tiers):
        return None
    groups = plan.input_streams
    demand = sum(g["count"] * g["fps"] for g in groups)
    if len(groups) == 1:
        g = groups[0]
        streams = f"{g['count']} stream{'s' if g['count'] != 1 else ''} x {g['fps']:g} fps"
    else:
        streams = " + ".join(f"{g['count']} x {g['fps']:g} fps ({g['name']})" for g in groups)
    prop = [f["latency_ms"] / 1e3 for f in plan.link_figures] or [0.0] * len(cost.link_s)
    k = len(plan.tiers)
    loads = [(plan.tier_load_fps[t] * cost.stage_compute_s[t], f"tier {plan.tiers[t]} compute") for t in range(k)]
    loads += [
        (plan.tier_load_fps[j] * max(cost.link_s[j] - prop[j], 0.0), f"link {plan.tiers[j]}->{plan.tiers[j + 1]}") for j in range(k - 1)
    ]
    busiest, name = max(loads, key=lambda x: x[0])
    return Demand(demand, demand / busiest if busiest > 0 else math.inf, streams, name)


# ---------------------------------------------------------------------------------------------- next best
def _neighbours(problem: Problem, chosen: np.ndarray) -> list[np.ndarray]:
    """Every single-cut move (link ``j``'s boundary at each position of the capture order, the other
    boundaries kept: ops before it go no higher than tier ``j``, the rest no lower than ``j + 1``) and
    every one-op move across a boundary; the valid ones, in a fixed order, without duplicates."""
    n, k = problem.n, problem.k
    first = int(np.flatnonzero(problem.is_input).max()) + 1 if problem.is_input.any() else 0
    before = np.arange(n)[None, :] < np.arange(first, n + 1)[:, None]  # [cut positions, n]
    rows = [np.where(before, np.minimum(chosen, j), np.maximum(chosen, j + 1)) for j in range(k - 1)]
    for v in np.flatnonzero(~problem.is_input):
        for t in (chosen[v] - 1, chosen[v] + 1):
            if 0 <= t < k and all(chosen[u] <= t for u in problem.preds[v]) and all(chosen[s] >= t for s in problem.succs[v]):
                row = chosen.copy()
                row[v] = t
                rows.append(row[None])
    rows = np.concatenate(rows) if rows else np.zeros((0, n), dtype=int)
    # valid: inputs on tier 0 and no value moving away from the sink (holds whenever the capture order is topological)
    src = np.array([u for v in range(n) for u in problem.preds[v]], dtype=int)
    dst = np.array([v for v in range(n) for _ in problem.preds[v]], dtype=int)
    valid = (rows[:, problem.is_input] == 0).all(axis=1) & (rows[:, src] <= rows[:, dst]).all(axis=1)
    seen, out = {chosen.tobytes()}, []
    for row in rows[valid]:
        key = row.tobytes()
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


def next_best(
    problem: Problem, req: Request, chosen: np.ndarray, bound_s: float | None = None
) -> tuple[Alternative | None, Alternative | None]:
    """The best neighbour of ``chosen`` no better than it, and the best one better than it (None when the
    solver's plan is the best of its neighbourhood, as an optimal plan is).

    Neighbours keep ``problem``'s codecs and must meet ``req`` (tier bounds, memory, SLO) and ``bound_s``
    (the latency bound of a ``bytes`` plan); their accuracy under lossy codecs is not measured.
    """
    chosen = np.asarray(chosen, dtype=int)
    mine = problem.evaluate(chosen)
    rows = [r for r in _neighbours(problem, chosen) if (r >= req.lo).all() and (r <= req.hi).all()]
    if not rows:
        return None, None
    fig = problem.rank_figures(np.stack(rows))
    limit = min(x for x in (req.slo_s, bound_s, math.inf) if x is not None)
    keys = [
        ranking_key(
            req.objective,
            SimpleNamespace(
                latency_s=fig["latency_s"][i],
                throughput_fps=fig["throughput_fps"][i],
                energy_j=fig["energy_j"][i],
                link_bytes=(fig["bytes"][i],),
            ),
        )
        for i in range(len(rows))
    ]
    mine_key = ranking_key(req.objective, mine)
    tol = 1e-9 * abs(mine_key) + 1e-15
    better = None
    for i in sorted(range(len(rows)), key=lambda i: (keys[i], fig["latency_s"][i], i)):
        if fig["latency_s"][i] > limit * (1 + 1e-9):
            continue
        cost = problem.evaluate(rows[i])
        if any(m > b for m, b in zip(cost.memory_bytes, req.mem)):
            continue
        alt = _alternative(problem, chosen, rows[i], cost)
        if ranking_key(req.objective, cost) >= mine_key - tol:
            return alt, better
        better = better or alt
    return None, better


def _alternative(problem: Problem, chosen: np.ndarray, row: np.ndarray, cost: Cost) -> Alternative:
    names = [t.name for t in problem.tiers]
    ops = [node.name for node in problem.graph.nodes]
    moves = []
    for src, dst in sorted({(int(chosen[v]), int(row[v])) for v in np.flatnonzero(row != chosen)}):
        which = [ops[v] for v in np.flatnonzero((chosen == src) & (row == dst))]
        what = f"op {which[0]} moves" if len(which) == 1 else f"{which[0]} .. {which[-1]} ({len(which)} ops) move"
        moves.append(f"{what} from {names[src]} to {names[dst]}")
    was, now = problem.crossing(chosen), problem.crossing(row)
    sends = [
        f"{names[j]}->{names[j + 1]} sends {_values(problem, now[:, j], j)} instead of {_values(problem, was[:, j], j)}"
        for j in range(problem.k - 1)
        if (was[:, j] != now[:, j]).any()
    ]
    change = "; ".join(moves) + (", so " + "; ".join(sends) if sends else "")
    return Alternative(change, {ops[v]: names[row[v]] for v in np.flatnonzero(row != chosen)}, tuple(problem.codecs), cost)


def _values(problem: Problem, mask: np.ndarray, link: int) -> str:
    which = [problem.graph.nodes[v].name for v in np.flatnonzero(mask)]
    shown = ", ".join(which[:2]) + (f" (+{len(which) - 2})" if len(which) > 2 else "")
    return f"{shown or 'nothing'} ({int((mask * problem.link_bytes[:, link]).sum()):,} B)"


def _figure(objective: str, cost: Cost) -> str:
    if objective == "latency":
        return f"{cost.latency_s * 1e3:.1f} ms"
    if objective == "throughput":
        return f"{cost.throughput_fps:.1f} frames/s"
    if objective == "energy":
        return f"{cost.energy_j:.3g} J/frame"
    return f"{sum(cost.link_bytes):,} B/frame on the links"


def compare_line(objective: str, alt: Cost, mine: Cost) -> str:
    """``41.2 ms, 8.0% worse in latency`` (``alt`` against ``mine`` on the objective)."""
    if objective == "throughput":  # in frames/s: 8 against 10 is 20% worse
        rel = 1 - alt.throughput_fps / mine.throughput_fps if mine.throughput_fps > 0 else 0.0
    else:
        a, b = objective_value(objective, alt), objective_value(objective, mine)
        rel = (a - b) / b if b > 0 else 0.0
    if abs(rel) < 1e-9 and objective != "latency":  # a tie, broken by latency
        return (
            f"{_figure(objective, alt)}, the same {objective}; {alt.latency_s * 1e3:.1f} ms against "
            f"{mine.latency_s * 1e3:.1f} ms in latency"
        )
    word = "worse" if rel >= 0 else "better"
    pct = f"{abs(rel):.1%}" if abs(rel) >= 1e-3 or rel == 0 else f"{abs(rel):.3%}"
    return f"{_figure(objective, alt)}, {pct} {word} in {objective}"


# ---------------------------------------------------------------------------------------------- display
def summary_lines(plan: Plan) -> list[str]:
    """Demand against capacity, energy (objective ``energy``), the next-best plan and the baselines that
    break a constraint, one line each."""
    lines = []
    d = demand_of(plan)
    lines.append(
        d.line()
        if d
        else f"predicted capacity {plan.predicted.throughput_fps:.1f} frames/s "
        f"(bottleneck: {plan.predicted.bottleneck}); no demand to compare: the topology lists no sources: with fps"
    )
    if plan.objective == "energy":
        lines.append(
            f"energy: {plan.predicted.energy_j:.3g} J per frame on each {plan.tiers[0]} "
            "(its compute and encoding x its power + bytes sent x its radio's joules per byte)"
        )
    if plan.next_best is not None:
        lines.append(f"next best: {plan.next_best.change}: {compare_line(plan.objective, plan.next_best.cost, plan.predicted)}")
    elif len(plan.tiers) > 1:
        lines.append("next best: none: no other plan next to this one meets the constraints")
    for name, why in plan.baseline_breaks.items():
        lines += [f"baseline '{name}' breaks {w}" for w in why]
    return lines


def _codecs(codecs) -> str:
    return "" if not codecs else codecs[0] if len(set(codecs)) == 1 else " / ".join(codecs)


def plan_tables(plan: Plan) -> list:
    """rich renderables: stages, links, and the plan against the baselines."""
    from rich.table import Table

    stages = Table(title=f"plan: {plan.model} on {plan.topology} ({plan.objective})")
    for col in ("tier", "ops", "compute ms", "memory MB", "first .. last op"):
        stages.add_column(col, justify="left" if col in ("tier", "first .. last op") else "right")
    for i, s in enumerate(plan.stages):
        span = f"{s.nodes[0]} .. {s.nodes[-1]}" if s.nodes else "(forwards only)"
        stages.add_row(
            s.tier_name,
            str(len(s.nodes)),
            f"{plan.predicted.stage_compute_s[i] * 1e3:.2f}",
            f"{plan.predicted.memory_bytes[i] / 1e6:.1f}",
            span,
        )
    links = Table(title="what crosses each link")
    for col in ("link", "codec", "values", "bytes/frame", "ms/frame"):
        links.add_column(col)
    for link in plan.links:
        names = ", ".join(c.name for c in link.tensors[:4]) + (f" (+{len(link.tensors) - 4})" if len(link.tensors) > 4 else "")
        links.add_row(f"{link.src} -> {link.dst}", link.codec, names, f"{link.bytes:,}", f"{link.time_s * 1e3:.2f}")
    has_demand, energy, breaks = demand_of(plan) is not None, plan.objective == "energy", bool(plan.baseline_breaks)
    cmp = Table(title=f"predicted, against the baselines (same cost model, codecs chosen alike); {plan.optimality()}")
    for col in (
        ("plan", "codecs", "latency ms", "frames/s")
        + ("vs demand",) * has_demand
        + ("J/frame (device)",) * energy
        + ("uplink B/frame", "bottleneck")
        + ("constraints",) * breaks
    ):
        cmp.add_column(col)
    rows = [("tierpipe", plan.predicted, plan.codecs)] + [(n, c, plan.baseline_codecs.get(n, ())) for n, c in plan.baselines.items()]
    for name, c, codecs in rows:
        if c is None:
            cmp.add_row(name, _codecs(codecs), "infeasible", *[""] * (3 + has_demand + energy + breaks))
            continue
        cells = [name, _codecs(codecs), f"{c.latency_s * 1e3:.1f}", f"{c.throughput_fps:.1f}"]
        if has_demand:
            d = demand_of(plan, c)
            cells.append(f"{d.headroom:.2f}x" + ("" if d.met else " (not met)"))
        if energy:
            cells.append(f"{c.energy_j:.3g}")
        why = plan.baseline_breaks.get(name, ())
        cells += [f"{c.link_bytes[0] if c.link_bytes else 0:,}", c.bottleneck]
        if breaks:
            cells.append("breaks " + ", ".join(w.split(":")[0].split("=")[0] for w in why) if why else "ok")
        cmp.add_row(*cells)
    return [stages, links, cmp]
