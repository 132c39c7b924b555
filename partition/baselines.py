"""The research baselines, computed with our cost model so plans compare like with like.

- all on the source tier (nothing leaves the device but the result);
- all on the sink (the raw input is uploaded);
- Neurosurgeon (Kang et al. 2017): one cut in the layer order, device + server;
- DADS (Hu et al. 2019): a 2-tier s-t min-cut of the DAG, device + server.
The originals send raw values; here each is priced with the plan's codec choice (:func:`baseline_codecs`),
and :func:`constraint_breaks` names the constraints of the request a baseline breaks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .codec import is_lossless
from .mincut import min_cost_assignment
from .pricing import Cost, Problem
from .segments import cut_profile
from .solution import Request

__all__ = ["baseline_assignments", "baseline_codecs", "constraint_breaks"]


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
    out["dads (2-tier min-cut)"] = min_cost_assignment(
        problem.preds, problem.succs, problem.is_output, node_cost, problem.link_time, lo, hi
    )
    return out


def baseline_codecs(
    problem_of: Callable[[tuple[str, ...]], Problem],
    a: np.ndarray,
    links: int,
    space: Sequence[str],
    objective: str,
    acceptable: Callable[[np.ndarray, tuple[str, ...]], bool] | None = None,
) -> tuple[str, ...]:
    """The codec of every link for assignment ``a``: per link, the codec of ``space`` that serves the
    objective best for the values crossing it (the least link time; the least bytes for ``bytes``; the
    least device energy on the device's uplink for ``energy``), earlier codecs of ``space`` winning ties.

    Args:
        problem_of: ``codecs -> Problem`` with those codecs, one per link (the optimizer's cache).
        space: the codecs the plan could choose from (one codec: the plan's fixed setting).
        acceptable: ``(a, codecs) -> bool``, the accuracy budget; when the choice has a lossy codec and
            is not acceptable, its lossy links take the best lossless codec of ``space`` instead.
    """
    per_codec = {c: problem_of((c,) * links) for c in dict.fromkeys(space)}
    cross = next(iter(per_codec.values())).crossing(a)

    def score(codec: str, j: int) -> tuple[float, float]:
        p, on = per_codec[codec], cross[:, j]
        time_s, nbytes = float((on * p.link_time[:, j]).sum()), float((on * p.link_bytes[:, j]).sum())
        if objective == "bytes":
            return nbytes, time_s
        if objective == "energy" and j == 0:
            return float((on * p.energy_send).sum()), time_s
        return time_s, nbytes

    def best(choices: Sequence[str], j: int) -> str:
        return min(choices, key=lambda c: score(c, j))

    codecs = tuple(best(list(per_codec), j) for j in range(links))
    lossless = [c for c in per_codec if is_lossless(c)]
    if acceptable is not None and lossless and not all(map(is_lossless, codecs)) and not acceptable(a, codecs):
        codecs = tuple(c if is_lossless(c) else best(lossless, j) for j, c in enumerate(codecs))
    return codecs


def constraint_breaks(
    problem: Problem, a: np.ndarray, cost: Cost, req: Request, pinned: Request, keep_input_on: str | None = None
) -> tuple[str, ...]:
    """The constraints of the request that assignment ``a`` breaks, each ``"what: how"``.

    Args:
        req: the request's bounds, memory budgets and SLO.
        pinned: the same request without ``keep_input_on`` (its bounds hold the pins and not_before alone).
    """
    names = [t.name for t in problem.tiers]
    out = []
    if keep_input_on is not None:
        j = names.index(keep_input_on)
        cross = problem.crossing(a)
        leaving = [problem.graph.nodes[v].name for v in np.flatnonzero(problem.is_input) if cross[v, j:].any()]
        if leaving:
            out.append(f"keep_input_on={keep_input_on}: the raw input {', '.join(leaving)} leaves {keep_input_on}")
    outside = np.flatnonzero((a < pinned.lo) | (a > pinned.hi))
    if len(outside):
        v = int(outside[0])
        out.append(
            f"pins: {len(outside)} op(s) off their tiers, e.g. {problem.graph.nodes[v].name} on {names[a[v]]} "
            f"(allowed {names[pinned.lo[v]]}..{names[pinned.hi[v]]})"
        )
    over = [t for t in range(problem.k) if cost.memory_bytes[t] > req.mem[t]]
    if over:
        t = over[0]
        out.append(f"memory: needs {cost.memory_bytes[t] / 1e6:.1f} MB on {names[t]}, which has {req.mem[t] / 1e6:.1f} MB")
    if req.slo_s is not None and cost.latency_s > req.slo_s:
        out.append(f"latency SLO: {cost.latency_s * 1e3:.1f} ms > {req.slo_s * 1e3:.1f} ms")
    return tuple(out)
