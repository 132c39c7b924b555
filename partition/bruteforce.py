"""Exhaustive search over every valid assignment: the oracle for small graphs (tests, benchmarks)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .pricing import Cost, Problem

__all__ = ["valid_assignments", "brute_force"]


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
