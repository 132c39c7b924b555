"""The research baselines, computed with our cost model so plans compare like with like.

- all on the source tier (nothing leaves the device but the result);
- all on the sink (the raw input is uploaded);
- Neurosurgeon (Kang et al. 2017): one cut in the layer order, device + server;
- DADS (Hu et al. 2019): a 2-tier s-t min-cut of the DAG, device + server.
All use the raw codec, as the originals do.
"""

from __future__ import annotations

import numpy as np

from .evaluate import Problem
from .mincut import min_cost_assignment
from .segments import cut_profile

__all__ = ["baseline_assignments"]


def baseline_assignments(problem: Problem) -> dict[str, np.ndarray]:
    """Assignments of each baseline on ``problem`` (use a raw-codec problem)."""
    n, k = problem.n, problem.k
    top = k - 1
    names = [t.name for t in problem.tiers]
    out = {f"all on {names[0]}": np.zeros(n, dtype=int)}
    if k == 1:
        return out
    out[f"all on {names[top]}"] = np.where(problem.is_input, 0, top)
    # Neurosurgeon: the first p nodes of the layer order on the device, the rest on the server
    order = np.arange(n)
    _, prefix, link_at, _ = cut_profile(problem, order)
    lat = prefix[:, 0] + (prefix[n, top] - prefix[:, top]) + link_at.sum(axis=1)
    first = int(np.flatnonzero(problem.is_input).max()) + 1 if problem.is_input.any() else 0
    p = first + int(np.argmin(lat[first:]))
    out["neurosurgeon (1 cut, 2 tiers)"] = np.where(np.arange(n) < p, 0, top)
    # DADS: min-cut with only the device and the server allowed
    big = (problem.compute.sum() + problem.link_time.sum() + 1.0) * 1e3
    node_cost = problem.compute.copy()
    node_cost[:, 1:top] = big
    lo = np.zeros(n, dtype=int)
    hi = np.where(problem.is_input, 0, top)
    out["dads (2-tier min-cut)"] = min_cost_assignment(problem.preds, problem.succs, problem.is_output, node_cost,
                                                       problem.link_time, lo, hi)
    return out
