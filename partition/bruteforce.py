"""Exhaustive search over every valid assignment: the oracle for small graphs (tests, benchmarks)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .pricing import Cost, Problem

__all__ = ["valid_assignments", "brute_force", "brute_force_exits"]


def valid_assignments(problem: Problem):
    """Yield every monotone assignment with inputs on tier 0 (nodes in topological order)."""
    n, k = problem.n, problem.k
    a = np.zeros(n, dtype=int)

    def rec(v: int):
        if v == n:
            yield a.copy()
            return
        low = max((a[p] for p in problem.preds[v]), default=0)
        top = 0 if problem.is_input[v] else k - 1
        for t in range(low, top + 1):
            a[v] = t
            yield from rec(v + 1)

    yield from rec(0)


def brute_force(problem: Problem, key: Callable[[Cost], float], feasible: Callable[[np.ndarray, Cost], bool] | None = None):
    """The assignment minimising ``key(cost)`` among all valid (and ``feasible``) ones, and its cost."""
    best, best_cost, best_key = None, None, float("inf")
    for a in valid_assignments(problem):
        cost = problem.evaluate(a)
        if feasible is not None and not feasible(a, cost):
            continue
        value = key(cost)
        if value < best_key - 1e-15:
            best, best_cost, best_key = a, cost, value
    return best, best_cost


def brute_force_exits(plain: Problem, candidates, objective: str, lo: np.ndarray, hi: np.ndarray, mem: np.ndarray, slo_s=None):
    """The best (assignment, live exits {index: threshold}, expected figures) over every valid assignment and
    every live set and thresholds, by mixing the figures of each outcome (a frame answered on tier ``t``,
    or by the full model) with its calibrated probability: independent of ``pricing.ExitTerms``' weighting.

    An exit whose node lands on the sink tier is not live (it would save nothing). Returns
    ``(assignment, thresholds, figures)`` with ``figures = {latency_s, throughput_fps, bytes, energy_j}``,
    or ``None`` when nothing is feasible.
    """
    c, k = candidates, plain.k
    best, best_key = None, float("inf")
    configs = [{}]
    for e in range(len(c.names)):
        configs = [dict(cfg) for cfg in configs] + [{**cfg, e: thr} for cfg in configs for thr in c.thresholds[e]]
    for a in valid_assignments(plain):
        if (a < lo).any() or (a > hi).any():
            continue
        cross = plain.crossing(a)
        compute = np.array([plain.compute[a == t, t].sum() for t in range(k)])
        link_s = (cross * plain.link_time).sum(axis=0)
        link_b = (cross * plain.link_bytes).sum(axis=0)
        send_j = float((cross[:, 0] * plain.energy_send).sum()) if k > 1 else 0.0
        for cfg in configs:
            live = {e: thr for e, thr in cfg.items() if a[plain.graph.index[c.nodes[e]]] < k - 1}
            if len(live) != len(cfg):
                continue  # the same as the live set without the exit on the sink (enumerated too)
            rates, quality = c.calibration.outcome(live)
            if not c.budget.within(quality):
                continue
            tier_of = {e: int(a[plain.graph.index[c.nodes[e]]]) for e in live}
            head_s = np.zeros(k)
            head_mem = np.zeros(k)
            for e, t in tier_of.items():
                head_s[t] += c.head_host_s[e] * plain.cost.scale[t]
                head_mem[t] += c.head_param_bytes[e]
            if ((plain.memory(a) + head_mem) > mem).any():
                continue
            p_at = np.zeros(k)  # share of frames answered on each tier; the sink's: the full model
            for e, t in tier_of.items():
                p_at[t] += rates[e]
            p_at[k - 1] = 1.0 - p_at[: k - 1].sum()
            stage, link, nbytes, energy = np.zeros(k), np.zeros(k - 1), np.zeros(k - 1), 0.0
            for t in range(k):  # the outcome "answered on tier t": work up to t, a result frame above
                work = np.where(np.arange(k) <= t, compute + head_s, 0.0)
                up = np.arange(k - 1) < t
                result_b = np.where(up, 0.0, c.result_bytes)
                stage += p_at[t] * work
                link += p_at[t] * np.where(up, link_s, result_b / plain.bw_Bps)
                nbytes += p_at[t] * np.where(up, link_b, result_b)
                energy += p_at[t] * (
                    (compute[0] + head_s[0]) * plain.topology.path[0].power_w
                    + (send_j if t > 0 else c.result_bytes * plain.topology.links[0].tx_energy_nj_per_byte * 1e-9)
                )
            latency = stage.sum() + link.sum() + plain.prop_s.sum()
            if slo_s is not None and latency > slo_s:
                continue
            worst = max([plain.streams[t] * stage[t] for t in range(k)] + [plain.streams[j] * link[j] for j in range(k - 1)])
            stream_fps = 1.0 / worst if worst > 0 else float("inf")
            figures = {
                "latency_s": float(latency),
                "throughput_fps": float(stream_fps * plain.n_streams),
                "bytes": float(nbytes.sum()),
                "energy_j": float(energy),
            }
            key = {"latency": latency, "throughput": -figures["throughput_fps"] + 1e-9 * latency}.get(objective)
            if key is None:
                key = (figures["bytes"] if objective == "bytes" else figures["energy_j"]) + 1e-9 * latency
            if key < best_key - 1e-15:
                best, best_key = (a.copy(), live, figures), key
    return best
