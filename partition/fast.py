"""The fast solvers: min-cut and DP over contiguous segments, for one codec vector.

- ``latency``: exact layered min-cut (``mincut.py``) over all valid assignments of the DAG, for
  any number of tiers. When a memory budget binds, a Lagrangian search over per-tier memory
  prices finds a plan that fits, plus the latency-optimal contiguous splits; not proven optimal.
- ``throughput``: DP over contiguous segments of a few topological orders (``segments.py``),
  plus every other candidate (min-cut, baselines). Exact on chains, not on DAGs.
- ``bytes``: least bytes on all links per frame under a latency bound (the SLO, else 1.5x the
  best latency), by a Lagrangian search of ``bytes + lambda * time``.
- ``energy``: least device joules per frame, a min-cut (the energy is a cost per op on tier 0
  and per value crossing its uplink).

:func:`fast_solve` returns a :class:`Solution`; it keeps no state between calls.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import PartitionError
from .mincut import min_cost_assignment
from .pricing import Problem
from .segments import best_contiguous, topological_orders
from .solution import Request, Solution, ranking_key

__all__ = ["fast_solve", "fits", "memory_error", "FAST_METHODS"]

FAST_METHODS = {
    "latency": "layered s-t min-cut (exact over all DAG assignments)",
    "throughput": "DP over contiguous segments of topological orders + min-cut and baseline candidates",
    "bytes": "min-cut on bytes + lambda * time, lambda searched for the latency bound",
    "energy": "layered s-t min-cut on device joules (exact when memory does not bind)",
}


def fits(problem: Problem, a: np.ndarray, mem: np.ndarray) -> bool:
    return bool((problem.memory(a) <= mem).all())


def memory_error(problem: Problem, used: np.ndarray, mem: np.ndarray) -> PartitionError:
    j = int(np.argmax(used - mem))
    tier = problem.tiers[j]
    return PartitionError(
        f"no plan fits the memory budgets: the closest plan needs {used[j] / 1e6:.1f} MB on tier {tier.name!r}, whose "
        f"memory is {mem[j] / 1e6:.1f} MB ({(used[j] - mem[j]) / 1e6:.1f} MB over). Raise tiers[{j}].memory in "
        f"{problem.topology.source_file}, or remove pins / keep_input_on that hold nodes there"
    )


def slo_error(slo_s: float, fastest) -> PartitionError:
    return PartitionError(
        f"latency SLO of {slo_s * 1e3:.1f} ms cannot be met: the fastest plan takes "
        f"{fastest.latency_s * 1e3:.1f} ms ({(fastest.latency_s - slo_s) * 1e3:.1f} ms over). "
        "Relax the SLO, try --codec auto, or add capacity to the bottleneck "
        f"({fastest.bottleneck})"
    )


def _mincut_fitting(problem: Problem, node_cost, cross, lo, hi, mem, key) -> tuple[np.ndarray | None, bool, np.ndarray]:
    """Min-cut; if memory does not fit, raise per-tier prices on parameters until it does.

    Returns (best fitting assignment or None, whether the first cut fitted, least-overflow memory seen).
    """
    a = min_cost_assignment(problem.preds, problem.succs, problem.is_output, node_cost, cross, lo, hi)
    used = problem.memory(a)
    if (used <= mem).all():
        return a, True, used
    best, best_key, least = None, float("inf"), used
    price = np.zeros(problem.k)
    weight = problem.params + problem.raw_bytes
    unit = (node_cost.sum() + cross.sum() + 1e-9) / max(weight.sum(), 1.0)
    for _ in range(60):
        over = used > mem
        price[over] = np.maximum(price[over] * 2.0, unit * 1e-3)
        a = min_cost_assignment(
            problem.preds, problem.succs, problem.is_output, node_cost + price[None, :] * weight[:, None], cross, lo, hi
        )
        used = problem.memory(a)
        if np.maximum(used - mem, 0).sum() < np.maximum(least - mem, 0).sum():
            least = used
        if (used <= mem).all():
            value = key(problem.evaluate(a))
            if value < best_key:
                best, best_key = a, value
            price *= 0.7  # step back to look for a cheaper fitting cut
        if best is not None and (price == 0).all():
            break
    return best, False, least


def fast_solve(p: Problem, req: Request, extra: Sequence[np.ndarray] = ()) -> Solution:
    """The best plan the fast paths find for ``p`` (its codecs fixed).

    Raises:
        PartitionError: nothing fits the memory budgets or meets the SLO (says by how much).
    """
    lo, hi, mem = req.lo, req.hi, req.mem
    lat_a, first_fit, least = _mincut_fitting(p, p.compute, p.link_time, lo, hi, mem, lambda c: c.latency_s)
    if lat_a is None:
        lat_a = next(
            (
                a
                for order in topological_orders(p, req.orders)
                for a in [best_contiguous(p, order, lo, hi, mem, objective="latency")[0]]
                if a is not None and fits(p, a, mem)
            ),
            None,
        )
    if lat_a is None:
        raise memory_error(p, least, mem)
    optimal = first_fit
    candidates = [lat_a]
    if not first_fit:
        # a memory budget binds: the Lagrangian can miss plans that fit (knapsack), so add the
        # latency-optimal contiguous splits that respect memory segment by segment
        for order in topological_orders(p, req.orders):
            a, _ = best_contiguous(p, order, lo, hi, mem, objective="latency")
            if a is not None:
                candidates.append(a)
    bound_s = None
    if req.objective == "throughput":
        optimal = False
        for order in topological_orders(p, req.orders):
            a, _ = best_contiguous(p, order, lo, hi, mem)
            if a is not None:
                candidates.append(a)
        candidates += list(extra)
    elif req.objective == "bytes":
        bound_s = req.slo_s if req.slo_s is not None else 1.5 * p.evaluate(lat_a).latency_s
        found, exact_cut = _bytes_candidates(p, req, bound_s)
        candidates += found
        optimal = optimal and exact_cut
    elif req.objective == "energy":
        energy_a, energy_fit = _energy_cut(p, req)
        optimal = energy_fit and (req.slo_s is None or p.evaluate(energy_a).latency_s <= req.slo_s)
        if energy_a is not None:
            candidates.append(energy_a)
    ok = [a for a in candidates if not p.violations(a) and (a >= lo).all() and (a <= hi).all() and fits(p, a, mem)]
    costs = [p.evaluate(a) for a in ok]
    if req.slo_s is not None:
        within = [(a, c) for a, c in zip(ok, costs) if c.latency_s <= req.slo_s]
        if not within:
            raise slo_error(req.slo_s, min(costs, key=lambda c: c.latency_s))
        ok, costs = [a for a, _ in within], [c for _, c in within]
    i = min(range(len(ok)), key=lambda i: ranking_key(req.objective, costs[i]))
    notes = (
        ()
        if optimal
        else (
            "a memory budget or latency bound binds, or the objective is throughput on a DAG: "
            "the fast paths' plan fits, but optimality is not proven",
        )
    )
    return Solution(ok[i], costs[i], optimal, 0.0 if optimal else None, FAST_METHODS[req.objective], notes, bound_s)


def _energy_cut(p: Problem, req: Request) -> tuple[np.ndarray | None, bool]:
    """The least device energy (a min-cut: energy is a node cost on tier 0 and a crossing cost on its
    uplink), latency as the tie-break; with per-tier memory prices when a budget binds."""
    node = np.zeros_like(p.compute)
    node[:, 0] = p.energy_compute
    cross = np.zeros_like(p.link_time)
    if p.k > 1:
        cross[:, 0] = p.energy_send
    eps = 1e-9 * (node.sum() + cross.sum() + 1e-18) / (p.compute.sum() + p.link_time.sum() + 1e-18)
    a, fitted, _ = _mincut_fitting(p, node + eps * p.compute, cross + eps * p.link_time, req.lo, req.hi, req.mem, lambda c: c.energy_j)
    return a, fitted


def _bytes_candidates(p: Problem, req: Request, bound: float) -> tuple[list[np.ndarray], bool]:
    """Cuts of ``bytes + lambda * time`` meeting ``bound``; True when the least-bytes cut itself meets it."""
    time_scale = p.compute.sum() + p.link_time.sum() + 1e-12
    byte_scale = p.link_bytes.sum() + 1.0
    base = byte_scale / time_scale

    def cut(lam: float) -> np.ndarray:
        return min_cost_assignment(p.preds, p.succs, p.is_output, lam * p.compute, p.link_bytes + lam * p.link_time, req.lo, req.hi)

    found = []
    low, high = -9.0, 9.0  # log10 of lambda / base
    a = cut(base * 10**low)
    if p.evaluate(a).latency_s <= bound:
        return [a], fits(p, a, req.mem)
    for _ in range(30):
        mid = (low + high) / 2
        a = cut(base * 10**mid)
        if p.evaluate(a).latency_s <= bound:
            found.append(a)
            high = mid
        else:
            low = mid
    return found, False
