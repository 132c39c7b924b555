"""Exact minimum of an additive cost over monotone assignments of a DAG to k tiers.

DADS cuts a DAG between 2 tiers with one s-t min-cut. For k tiers we use the
layered construction of Ishikawa (2003): every node ``v`` gets a chain of k-1
vertices ``(v, 0) .. (v, k-2)``; ``(v, i)`` on the source side means ``t(v) > i``.

    s -c(v,0)-> (v,0) -c(v,1)-> (v,1) ... (v,k-2) -c(v,k-1)-> t     one chain cut = one tier
    (v,i) -inf-> (v,i-1)                                             the chain is cut once
    (u,i) -inf-> (v,i)   for u -> v                                  t(u) <= t(v)
    (w,i) -inf-> a(u,i) -x(u,i)-> (u,i)   for consumers w of u       u crosses link i once
    s -x(u,i)-> (u,i)    for outputs u                               outputs reach the sink

so a cut's capacity is exactly compute + transfer of the assignment it encodes.
Max-flow: ``scipy.sparse.csgraph.maximum_flow`` (Dinic), on int32 capacities
scaled so that every finite capacity together fits (resolution ~1e-9 of the total).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order, maximum_flow

from .errors import PartitionError

__all__ = ["min_cost_assignment", "propagate_bounds"]

_BUDGET = 2**29  # finite capacities are scaled to sum to at most this


def propagate_bounds(preds: list[list[int]], succs: list[list[int]], lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tighten per-node tier bounds along edges (nodes in topological order): t(u) <= t(v) for u -> v."""
    lo, hi = lo.copy(), hi.copy()
    for v in range(len(preds)):
        for u in preds[v]:
            lo[v] = max(lo[v], lo[u])
    for u in reversed(range(len(succs))):
        for v in succs[u]:
            hi[u] = min(hi[u], hi[v])
    return lo, hi


def min_cost_assignment(
    preds: list[list[int]],
    succs: list[list[int]],
    is_output: np.ndarray,
    node_cost: np.ndarray,
    cross_cost: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
) -> np.ndarray:
    """The assignment minimising ``sum node_cost[v, t(v)] + sum cross_cost[u, i] over crossings``.

    Args:
        preds, succs: adjacency by node index; nodes are in topological order.
        is_output: values that must reach the last tier.
        node_cost: ``[n, k]`` non-negative cost of running each node on each tier.
        cross_cost: ``[n, k-1]`` non-negative cost of node's value crossing link ``i``.
        lo, hi: per-node tier bounds (inputs: ``hi = 0``; pins: ``lo = hi``).

    Returns:
        ``int`` array of tiers, one per node.

    Raises:
        PartitionError: the bounds admit no assignment.
    """
    n, k = node_cost.shape
    lo, hi = propagate_bounds(preds, succs, np.asarray(lo), np.asarray(hi))
    if (lo > hi).any():
        v = int(np.flatnonzero(lo > hi)[0])
        raise PartitionError(
            f"constraints contradict each other at node #{v}: it must be on tier >= {lo[v]} "
            f"(pins below it) and <= {hi[v]} (inputs, privacy or pins above it)"
        )
    if k == 1:
        return np.zeros(n, dtype=int)
    m = k - 1
    S, T = 0, 1

    def vid(v, i):
        return 2 + np.asarray(v) * m + np.asarray(i)

    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    caps: list[np.ndarray] = []  # float; np.inf marks infinite
    nodes = np.arange(n)

    def add(r, c, cap):
        r, c = np.broadcast_arrays(np.asarray(r), np.asarray(c))
        rows.append(r.ravel())
        cols.append(c.ravel())
        caps.append(np.broadcast_to(np.asarray(cap, dtype=float), r.shape).ravel())

    # chains: one cut per node picks its tier
    for i in range(k):
        src = np.full(n, S) if i == 0 else vid(nodes, i - 1)
        dst = np.full(n, T) if i == m else vid(nodes, i)
        add(src, dst, node_cost[:, i])
        if 0 < i < m:
            add(vid(nodes, i), vid(nodes, i - 1), np.inf)
    # precedence
    edges = np.array([(u, v) for v in range(n) for u in preds[v]], dtype=int).reshape(-1, 2)
    for i in range(m):
        if len(edges):
            add(vid(edges[:, 0], i), vid(edges[:, 1], i), np.inf)
    # bounds: t(v) >= lo -> (v, i) source side for i < lo; t(v) <= hi -> sink side for i >= hi
    for i in range(m):
        need = np.flatnonzero(lo > i)
        add(np.full(len(need), S), vid(need, i), np.inf)
        cap = np.flatnonzero(hi <= i)
        add(vid(cap, i), np.full(len(cap), T), np.inf)
    # crossings
    next_id = 2 + n * m
    for u in range(n):
        if is_output[u]:
            add(np.full(m, S), vid(u, np.arange(m)), cross_cost[u])
            continue
        consumers = succs[u]
        if not consumers:
            continue
        if len(consumers) == 1:
            add(vid(consumers[0], np.arange(m)), vid(u, np.arange(m)), cross_cost[u])
            continue
        aux = next_id + np.arange(m)
        next_id += m
        for w in consumers:
            add(vid(w, np.arange(m)), aux, np.inf)
        add(aux, vid(u, np.arange(m)), cross_cost[u])

    r, c, cap = np.concatenate(rows), np.concatenate(cols), np.concatenate(caps)
    finite = np.isfinite(cap)
    total = cap[finite].sum()
    scale = _BUDGET / total if total > 0 else 1.0
    icap = np.where(finite, np.rint(cap * scale), _BUDGET + 1).astype(np.int64)
    keep = (icap > 0) & (r != c)
    graph = sp.csr_array((icap[keep], (r[keep], c[keep])), shape=(next_id, next_id))
    graph.sum_duplicates()
    graph.data = np.minimum(graph.data, 2**31 - 1).astype(np.int32)
    flow = maximum_flow(graph, S, T)
    residual = (graph - flow.flow).tocsr()
    residual.data = np.where(residual.data > 0, 1, 0).astype(np.int32)
    residual.eliminate_zeros()
    reach = breadth_first_order(residual, S, directed=True, return_predecessors=False)
    on_source = np.zeros(next_id, dtype=bool)
    on_source[reach] = True
    return on_source[vid(nodes[:, None], np.arange(m)[None, :])].sum(axis=1).astype(int)
