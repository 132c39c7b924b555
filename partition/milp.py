"""The exact solver: the assignment problem as a mixed-integer linear program, solved by HiGHS.

Same cost model as :mod:`partition.pricing` (which stays the one source of truth: the
solver's assignment is re-evaluated there). With ``k`` tiers and links ``j = 0..k-2``:

- ``z[v,t]`` (binary, ``t < k-1``) is 1 when node ``v`` runs on tier ``t`` or below; ``z`` is
  non-decreasing in ``t`` and ``x[v,t] = z[v,t] - z[v,t-1]`` says "v runs on t".
  Data moves toward the sink: for an edge ``u -> v``, ``z[u,t] >= z[v,t]``.
  Pins, ``keep_input_on`` and inputs on tier 0 fix ``z`` outside ``[lo[v], hi[v]]``.
- ``c[v,j]`` (continuous, forced to 0/1) is 1 when v's value crosses link ``j``:
  ``c[v,j] >= z[v,j] - z[s,j]`` for every consumer ``s``, and ``>= z[v,j]`` for model outputs.
  So a value crosses each link once however many consumers it has.
- Codecs, where a link has a choice: ``y[j,c]`` (binary, one per link), ``w[v,j,c] <= y[j,c]``
  and ``c[v,j] = sum_c w[v,j,c]``; a crossing costs the time and bytes of the chosen codec.
- Memory per tier ``t``: every parameter storage used on ``t`` (``s[p,t] >= x[v,t]`` for each
  user, so a tied weight counts once per tier) + every value produced on ``t`` + every value
  received over link ``t-1``. This is :meth:`Problem.memory`'s definition, an upper bound of
  the peak live set under any execution order.
- Latency ``L`` = compute of every node on its tier + every crossing's link time (+ the links'
  propagation, a constant). Throughput: ``B >= F_t x stage_t`` and ``B >= F_j x link_j``
  (``F``: streams a node of that tier serves); minimise ``B``. Bytes: minimise the crossings'
  encoded bytes under a latency bound. Energy: the device's joules (compute on tier 0, and
  encode time and radio bytes of what crosses its uplink). The latency SLO is a row ``L <= slo``.

Costs are scaled so the incumbent's objective is about 1 (HiGHS's tolerances are absolute).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np

from .lp import Lin, LinearModel, lin_sum, solve_with_highs
from .mincut import min_cost_assignment
from .pricing import Problem
from .solution import Request, Solution, objective_value

__all__ = ["exact_solve", "EXACT_METHOD"]

EXACT_METHOD = "MILP (HiGHS branch and bound)"


def exact_solve(
    p: Problem,
    req: Request,
    by_codec: Mapping[str, Problem] | None = None,
    allowed: Sequence[Sequence[str]] | None = None,
    incumbent: Solution | None = None,
    time_limit_s: float | None = None,
    rel_gap: float = 1e-7,
) -> Solution | None:
    """The optimal assignment (and codecs, where ``allowed`` gives a link several) for ``req``.

    Args:
        p: the problem with the codec vector ``incumbent`` uses (or raw).
        by_codec: ``{codec: Problem with that codec on every link}``, for links with a choice.
        allowed: per link, the codecs it may use (default: ``p``'s own).
        incumbent: a feasible solution (the fast paths'), given to HiGHS as its start.
        time_limit_s: stop there and return the best plan found with its proven gap.

    Returns:
        A :class:`Solution` whose ``gap`` is proven, or ``None`` when nothing is feasible (memory,
        SLO or bound) or the time ran out before any plan was found and no incumbent was given.
    """
    import highspy

    start = time.perf_counter()
    k, n = p.k, p.n
    allowed = [list(a) for a in (allowed or [[c] for c in p.codecs])]
    by_codec = dict(by_codec or {})
    if k == 1:
        a = np.zeros(n, dtype=int)
        cost = p.evaluate(a)
        return Solution(a, cost, True, 0.0, EXACT_METHOD, (), None, (), objective_value(req.objective, cost))
    obj = req.objective
    bound_s = req.slo_s
    if obj == "bytes" and bound_s is None:
        bound_s = _latency_bound(p, req, by_codec, allowed, time_limit_s, rel_gap)
        if bound_s is None:
            return None

    def problem_of(codec: str) -> Problem:
        """A problem with ``codec`` on every link (its figures for link j are those of codec on j)."""
        if codec not in by_codec:
            by_codec[codec] = p.with_codecs([codec] * (k - 1))
        return by_codec[codec]

    def link_figures(j: int, codec: str) -> tuple[np.ndarray, np.ndarray]:
        if p.codecs[j] == codec:
            return p.link_time[:, j], p.link_bytes[:, j]
        return problem_of(codec).link_time[:, j], problem_of(codec).link_bytes[:, j]

    # scales: the incumbent's (or a rough) latency and bytes become about 1
    t_scale = incumbent.cost.latency_s if incumbent else float(p.compute.max(axis=1).sum() + p.link_time.max(axis=1).sum())
    t_scale = max(t_scale, 1e-12)
    b_scale = max(float(sum(incumbent.cost.link_bytes)) if incumbent else float(p.raw_bytes.sum()), 1.0)

    m = LinearModel()
    z = np.full((n, k), -1, dtype=int)  # -1: constant (see zval)
    for v in range(n):
        for t in range(k - 1):
            if t < req.lo[v] or t >= req.hi[v]:
                continue
            z[v, t] = m.var(integer=True)

    def zval(v: int, t: int, x: np.ndarray) -> float:
        col, val = zterm(v, t)
        return val if col is None else float(x[col])

    def zterm(v: int, t: int) -> tuple[int | None, float]:
        """(column, 1) or (None, constant value) of z[v,t]."""
        if t < 0:
            return None, 0.0
        if t >= k - 1 or t >= req.hi[v]:
            return None, 1.0
        if t < req.lo[v]:
            return None, 0.0
        return int(z[v, t]), 1.0

    def add_z(lin: Lin, v: int, t: int, coef: float) -> None:
        col, val = zterm(v, t)
        lin.add(col, coef * val)

    def add_x(lin: Lin, v: int, t: int, coef: float) -> None:
        add_z(lin, v, t, coef)
        add_z(lin, v, t - 1, -coef)

    def put(lin: Lin, lo: float = -np.inf, hi: float = np.inf) -> None:
        m.row(lin.terms, lo - lin.const, hi - lin.const)

    anc = _ancestors(p)
    for v in range(n):
        for t in range(k - 2):
            if z[v, t] >= 0 and z[v, t + 1] >= 0:
                m.row({int(z[v, t]): 1.0, int(z[v, t + 1]): -1.0}, hi=0.0)
        # an edge u -> v that another path u -> w -> v implies needs no row of its own
        for u in (u for u in set(p.preds[v]) if not any(anc[w] >> u & 1 for w in p.preds[v] if w != u)):
            for t in range(k - 1):
                lin = Lin()
                add_z(lin, v, t, 1.0)
                add_z(lin, u, t, -1.0)
                if lin.terms:
                    put(lin, hi=0.0)
    # crossings
    c = np.full((n, k - 1), -1, dtype=int)
    for v in range(n):
        feeds = bool(p.succs[v]) or bool(p.is_output[v])
        for j in range(k - 1):
            if not feeds or req.lo[v] > j:
                continue
            c[v, j] = m.var()
            # consumer s before consumer s' (a path s -> s') sits on a tier <= that of s': only the last count
            for s in (s for s in set(p.succs[v]) if not any(anc[o] >> s & 1 for o in p.succs[v] if o != s)):
                lin = Lin()
                add_z(lin, v, j, 1.0)
                add_z(lin, s, j, -1.0)
                lin.add(int(c[v, j]), -1.0)
                put(lin, hi=0.0)
            if p.is_output[v]:
                lin = Lin()
                add_z(lin, v, j, 1.0)
                lin.add(int(c[v, j]), -1.0)
                put(lin, hi=0.0)
    # link time and bytes per link, codec choice
    link_time = [Lin() for _ in range(k - 1)]
    link_bytes = [Lin() for _ in range(k - 1)]
    energy_send: dict[int, dict[int, float]] = {}  # value -> {column: device joules when it crosses link 0}
    y: dict[tuple[int, str], int] = {}
    for j, choice in enumerate(allowed):
        if len(choice) == 1:
            lt, lb = link_figures(j, choice[0])
            for v in np.flatnonzero(c[:, j] >= 0):
                link_time[j].add(int(c[v, j]), lt[v] / t_scale)
                link_bytes[j].add(int(c[v, j]), lb[v] / b_scale)
                if j == 0:
                    source = p if p.codecs[0] == choice[0] else problem_of(choice[0])
                    energy_send[v] = {int(c[v, j]): source.energy_send[v]}
            continue
        for codec in choice:
            y[j, codec] = m.var(integer=True)
        m.row({y[j, codec]: 1.0 for codec in choice}, 1.0, 1.0)
        figures = {codec: link_figures(j, codec) for codec in choice}
        for v in np.flatnonzero(c[:, j] >= 0):
            split = {int(c[v, j]): -1.0}
            for codec in choice:
                w = m.var()
                split[w] = 1.0
                m.row({w: 1.0, y[j, codec]: -1.0}, hi=0.0)
                link_time[j].add(w, figures[codec][0][v] / t_scale)
                link_bytes[j].add(w, figures[codec][1][v] / b_scale)
                if j == 0:
                    energy_send.setdefault(v, {})[w] = problem_of(codec).energy_send[v]
            m.row(split, 0.0, 0.0)
    # compute per tier, latency
    stage = [Lin() for _ in range(k)]
    for v in range(n):
        for t in range(int(req.lo[v]), int(req.hi[v]) + 1):
            add_x(stage[t], v, t, p.compute[v, t] / t_scale)
    for t in range(k):  # constants of live exits (pricing.ExitTerms): head compute, result frames
        stage[t].add(None, p.stage_extra_s[t] / t_scale)
    for j in range(k - 1):
        link_time[j].add(None, p.link_extra_s[j] / t_scale)
        link_bytes[j].add(None, p.link_extra_bytes[j] / b_scale)
    latency = lin_sum(stage + link_time)
    if bound_s is not None:
        put(latency, hi=(bound_s - p.prop_s.sum()) / t_scale * (1 + 1e-9))
    # memory
    for t in range(k):
        if not np.isfinite(req.mem[t]):
            continue
        scale = max(req.mem[t], 1.0)
        lin = Lin()
        storages: dict[str, int] = {}
        for v in range(n):
            if not req.lo[v] <= t <= req.hi[v]:
                continue
            node = p.graph.nodes[v]
            add_x(lin, v, t, p.raw_bytes[v] / scale)
            if not node.param_keys:
                add_x(lin, v, t, node.param_bytes / scale)
            for key in node.param_keys:
                if key not in storages:
                    storages[key] = m.var()
                    lin.add(storages[key], p.graph.param_sizes.get(key, 0) / scale)
                user = Lin()
                add_x(user, v, t, 1.0)
                user.add(storages[key], -1.0)
                put(user, hi=0.0)
        if t >= 1:
            for v in np.flatnonzero(c[:, t - 1] >= 0):
                lin.add(int(c[v, t - 1]), p.raw_bytes[v] / scale)
        put(lin, hi=(req.mem[t] - p.mem_extra[t]) / scale)
    # objective: a linear expression, or for throughput a variable B above every tier's and link's load
    e_scale = max(incumbent.cost.energy_j if incumbent else float(p.energy_compute.sum() + p.energy_send.sum()), 1e-15)
    if obj == "throughput":
        b = m.var(0.0, np.inf)
        loads = [(p.streams[t], stage[t]) for t in range(k)] + [(p.streams[j], link_time[j]) for j in range(k - 1)]
        for streams, load in loads:
            lin = Lin()
            for col, val in load.terms.items():
                lin.add(col, streams * val)
            lin.const = streams * load.const
            lin.add(b, -1.0)
            put(lin, hi=0.0)
        target = Lin()
        target.add(b, 1.0)
    elif obj == "energy":
        # device joules: compute on tier 0 and what crosses its uplink
        target = Lin()
        target.add(None, p.energy_extra_j / e_scale)
        for v in range(n):
            if req.lo[v] == 0:
                add_x(target, v, 0, p.energy_compute[v] / e_scale)
        for send in energy_send.values():
            for col, val in send.items():
                target.add(col, val / e_scale)
    else:
        target = latency if obj == "latency" else lin_sum(link_bytes)
    cost = np.zeros(len(m.lower))
    for col, val in target.terms.items():
        cost[col] += val
    offset = target.const

    start_cols, start_vals = [], []
    if incumbent is not None:
        given = incumbent.codecs or tuple(p.codecs)
        if all(given[j] in allowed[j] for j in range(k - 1)):
            # the integer columns only: HiGHS completes the rest
            start_cols = [int(z[v, t]) for v in range(n) for t in range(k - 1) if z[v, t] >= 0]
            start_vals = [1.0 if incumbent.assignment[v] <= t else 0.0 for v in range(n) for t in range(k - 1) if z[v, t] >= 0]
            start_cols += list(y.values())
            start_vals += [1.0 if given[j] == codec else 0.0 for (j, codec) in y]
    left = None if time_limit_s is None else max(float(time_limit_s) - (time.perf_counter() - start), 0.05)
    h = solve_with_highs(m, cost, offset, rel_gap, left, start_cols, start_vals)
    status = h.getModelStatus()
    if status in (highspy.HighsModelStatus.kInfeasible, highspy.HighsModelStatus.kUnboundedOrInfeasible):
        return None
    info = h.getInfo()
    if h.getSolution().value_valid is False or info.primal_solution_status == 0:
        return None
    x = np.asarray(h.getSolution().col_value)
    a = np.array([sum(1 for t in range(k - 1) if zval(v, t, x) < 0.5) for v in range(n)])
    codecs = tuple(p.codecs[j] if len(allowed[j]) == 1 else max(allowed[j], key=lambda cc: x[y[j, cc]]) for j in range(k - 1))
    q = p if tuple(p.codecs) == codecs else p.with_codecs(codecs)
    solved = q.evaluate(a)
    proven = status == highspy.HighsModelStatus.kOptimal
    value = objective_value(obj, solved)
    scale = {"latency": t_scale, "throughput": t_scale, "bytes": b_scale, "energy": e_scale}[obj]
    dual = info.mip_dual_bound * scale + (p.prop_s.sum() if obj == "latency" else 0.0)
    lower = value if proven else min(dual, value)
    gap = 0.0 if proven else (max(value - dual, 0.0) / value if value > 0 else 0.0)
    gap = min(gap, 1.0)
    optimal = proven or gap <= rel_gap
    notes = (f"exact solver stopped at its time limit ({time_limit_s:.1f} s): proven gap {gap:.2%}",) if not proven else ()
    return Solution(a, solved, optimal, 0.0 if optimal else gap, EXACT_METHOD, notes, bound_s, codecs, lower)


def _latency_bound(p: Problem, req: Request, by_codec, allowed, time_limit_s, rel_gap) -> float | None:
    """1.5 x the least latency (the ``bytes`` objective's bound when no SLO is given).

    The layered min-cut is exact when its cut fits the memory budgets and the codecs are fixed;
    otherwise the latency MILP is solved first (None when it cannot be proven in time).
    """
    if all(len(choice) == 1 and choice[0] == p.codecs[j] for j, choice in enumerate(allowed)):
        a = min_cost_assignment(p.preds, p.succs, p.is_output, p.compute, p.link_time, req.lo, req.hi)
        if (p.memory(a) <= req.mem).all():
            return 1.5 * p.evaluate(a).latency_s
    fastest = exact_solve(p, Request("latency", req.lo, req.hi, req.mem, None, req.orders), by_codec, allowed, None, time_limit_s, rel_gap)
    return 1.5 * fastest.cost.latency_s if fastest is not None and fastest.optimal else None


def _ancestors(p: Problem) -> list[int]:
    """Per node, the bitset (a Python int) of every node with a path to it. Nodes are in topological order."""
    anc = [0] * p.n
    for v in range(p.n):
        for u in p.preds[v]:
            anc[v] |= anc[u] | (1 << u)
    return anc
