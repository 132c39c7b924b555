"""What a solver is asked (``Request``) and what it returns (``Solution``): plain values, no search state."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .pricing import Cost

__all__ = ["Request", "Solution", "objective_value", "ranking_key"]


@dataclass(frozen=True)
class Request:
    """One partitioning request, independent of the codecs.

    ``lo``/``hi``: per node, the lowest and highest tier allowed (pins, ``keep_input_on``, inputs
    on tier 0, already propagated along the edges). ``mem``: per tier budget in bytes (``inf``
    when memory is not enforced). ``slo_s``: the latency bound, if any.
    """

    objective: str
    lo: np.ndarray
    hi: np.ndarray
    mem: np.ndarray
    slo_s: float | None = None
    orders: int = 8


@dataclass(frozen=True)
class Solution:
    """An assignment with its cost, how it was found and how far from optimal it is proven to be.

    ``gap``: proven relative gap of the objective (0.0 = proven optimal), ``None`` when no bound is known.
    ``bound_s``: the latency bound a ``bytes`` solve used.
    """

    assignment: np.ndarray
    cost: Cost
    optimal: bool
    gap: float | None
    method: str
    notes: tuple[str, ...] = ()
    bound_s: float | None = None
    codecs: tuple[str, ...] = ()
    lower_bound: float | None = None  # proven: no plan's objective value is below it

    def proven_by(self, objective: str, lower_bound: float | None, rel_tol: float = 1e-7) -> Solution:
        """This solution with its gap against ``lower_bound`` (another solver's proof)."""
        if lower_bound is None:
            return self
        value = objective_value(objective, self.cost)
        gap = max(value - lower_bound, 0.0) / value if value > 0 else 0.0
        optimal = gap <= rel_tol
        return replace(
            self, optimal=optimal, gap=0.0 if optimal else min(gap, 1.0), lower_bound=lower_bound, notes=() if optimal else self.notes
        )


def objective_value(objective: str, cost: Cost) -> float:
    """The quantity an objective minimises: seconds of latency, bottleneck seconds per round, bytes, or device joules."""
    if objective == "latency":
        return cost.latency_s
    if objective == "throughput":
        return 1.0 / cost.stream_fps
    if objective == "energy":
        return cost.energy_j
    return float(sum(cost.link_bytes))


def ranking_key(objective: str, cost: Cost) -> float:
    """Objective value with latency as the tie-break."""
    if objective == "latency":
        return cost.latency_s
    if objective == "throughput":
        return -cost.throughput_fps + 1e-9 * cost.latency_s
    if objective == "energy":
        return cost.energy_j + 1e-9 * cost.latency_s
    return float(sum(cost.link_bytes)) + 1e-12 * cost.latency_s
