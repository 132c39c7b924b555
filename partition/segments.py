"""Throughput: the best split of a topological order into k contiguous segments (PipeEdge's family).

For a fixed order, tier ``j`` runs positions ``[c_{j-1}, c_j)``. What crosses link
``j`` depends only on ``c_j``, so a DP over cut positions minimises the
bottleneck exactly within the family:

    f_j(p) = min_{q <= p} max(g_{j-1}(q), F_j * (P_j(p) - P_j(q)))
    g_j(p) = max(f_j(p), F_j * X_j(p))

with ``P_j`` prefix sums of compute on tier ``j``, ``X_j(p)`` the link time of
the values crossing cut ``p`` and ``F_j`` the streams served by the busiest node
of tier ``j``. A chain has one topological order, so there the family holds every
valid assignment and the DP is exact; on DAGs we try several orders (the gap to
brute force is measured in ``benchmarks/bench_partition.py``).
"""

from __future__ import annotations

import numpy as np

from .pricing import Problem

__all__ = ["best_contiguous", "cut_profile", "topological_orders"]


def topological_orders(problem: Problem, count: int, seed: int = 0) -> list[np.ndarray]:
    """The capture order, a depth-first order, and ``count - 2`` random topological orders (inputs first)."""
    n = problem.n
    orders = [np.arange(n)]
    rng = np.random.default_rng(seed)
    for variant in range(max(count - 1, 0)):
        indeg = np.array([len(p) for p in problem.preds])
        ready = [v for v in range(n) if indeg[v] == 0]
        out = []
        while ready:
            ready.sort(key=lambda v: (not problem.is_input[v], -v if variant == 0 else rng.random()))
            v = ready.pop(0)
            out.append(v)
            for s in problem.succs[v]:
                indeg[s] -= 1
                if indeg[s] == 0:
                    ready.append(s)
        orders.append(np.array(out))
    unique = {tuple(o) for o in orders}
    return [np.array(o) for o in unique]


def cut_profile(problem: Problem, order: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What a cut at each position ``p`` of a topological ``order`` costs.

    Returns ``(pos, prefix, link_at, raw_at)``: each node's position; prefix sums of compute
    ``[n+1, k]``; link time of the values crossing cut ``p`` ``[n+1, k-1]``; their raw bytes ``[n+1]``.
    A value at position ``i`` crosses cut ``p`` for ``i < p <= R``, ``R`` its last consumer's
    position (``n`` for outputs): one add and one subtract per value, then a cumulative sum.
    """
    n, k = problem.n, problem.k
    pos = np.empty(n, dtype=int)
    pos[order] = np.arange(n)
    prefix = np.vstack([np.zeros((1, k)), np.cumsum(problem.compute[order], axis=0)])
    reach = np.array([max((pos[s] for s in problem.succs[u]), default=pos[u]) for u in range(n)])
    reach[problem.is_output] = n
    cross_time = np.zeros((n + 2, max(k - 1, 1)))
    cross_raw = np.zeros(n + 2)
    if k > 1:
        np.add.at(cross_time, pos + 1, problem.link_time)
        np.add.at(cross_time, reach + 1, -problem.link_time)
    np.add.at(cross_raw, pos + 1, problem.raw_bytes)
    np.add.at(cross_raw, reach + 1, -problem.raw_bytes)
    return pos, prefix, np.cumsum(cross_time, axis=0)[: n + 1], np.cumsum(cross_raw)[: n + 1]


def best_contiguous(
    problem: Problem,
    order: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    memory_bytes: np.ndarray | None = None,
    objective: str = "throughput",
) -> tuple[np.ndarray | None, float]:
    """The assignment of contiguous segments of ``order`` with the least bottleneck (seconds per round),
    or with ``objective="latency"`` the least sum of stage and link times (latency less propagation).

    ``lo``/``hi`` bound each node's tier; ``memory_bytes`` bounds each tier's
    parameters + received values. Returns ``(None, inf)`` when no split fits.
    """
    n, k = problem.n, problem.k
    pos, prefix, link_at, raw_at = cut_profile(problem, order)
    params = np.concatenate([[0.0], np.cumsum(problem.params[order])])
    # cut j must lie in [A_j, B_j]: nodes with hi <= j before it, nodes with lo > j after it
    A = np.zeros(k, dtype=int)
    B = np.full(k, n, dtype=int)
    for v in range(n):
        for j in range(k):
            if hi[v] <= j:
                A[j] = max(A[j], pos[v] + 1)
            if lo[v] > j:
                B[j] = min(B[j], pos[v])
    A[k - 1] = n
    total = objective == "latency"
    F = np.ones(k) if total else problem.streams
    combine = np.add if total else np.maximum
    mem = (memory_bytes if memory_bytes is not None else np.full(k, np.inf)) - problem.mem_extra  # heads of live exits
    inf = float("inf")
    cuts = np.arange(n + 1)
    # tier 0: segment [0, p)
    f = F[0] * (prefix[:, 0] + problem.stage_extra_s[0])
    f = np.where(params + 0.0 <= mem[0], f, inf)
    choice = []
    g = f.copy()
    if k > 1:
        g = combine(f, F[0] * (link_at[:, 0] + problem.link_extra_s[0]))
    g = np.where((cuts >= A[0]) & (cuts <= B[0]), g, inf)
    for j in range(1, k):
        fj = np.full(n + 1, inf)
        arg = np.zeros(n + 1, dtype=int)
        ps = [n] if j == k - 1 else range(A[j], B[j] + 1)
        for p in ps:
            q = cuts[: p + 1]
            seg = F[j] * (prefix[p, j] - prefix[q, j] + problem.stage_extra_s[j])
            cand = combine(g[: p + 1], seg)
            cand = np.where(params[p] - params[q] + raw_at[q] <= mem[j], cand, inf)
            best = int(np.argmin(cand))
            fj[p], arg[p] = cand[best], best
        choice.append(arg)
        g = fj if j == k - 1 else combine(fj, F[j] * (link_at[:, j] + problem.link_extra_s[j]))
        if j < k - 1:
            g = np.where((cuts >= A[j]) & (cuts <= B[j]), g, inf)
    value = float(g[n]) if k > 1 else float(g[n])
    if not np.isfinite(value):
        return None, inf
    # walk back the cuts
    bounds = [n]
    for arg in reversed(choice):
        bounds.append(int(arg[bounds[-1]]))
    bounds = bounds[::-1]  # c_0 .. c_{k-1}
    tiers_by_pos = np.searchsorted(np.array(bounds), np.arange(n), side="right")
    a = np.empty(n, dtype=int)
    a[order] = np.minimum(tiers_by_pos, k - 1)
    return a, value
