"""A stage's wall time on a CPU quota: CFS bandwidth control gives a budget per period, not a slower CPU.

A node under a quota of ``budget_s`` CPU seconds every ``period_s`` (a lab host's cgroup, ``cpu.max`` or
``cpu.cfs_quota_us``; a container's ``--cpus``) runs a burst at full speed until the budget is spent, then
waits for the next period, where the budget is refilled (not added to). So a stage's wall time is not its
CPU time over the quota's share (``cpu / (budget / period)``): a stage shorter than the budget runs at full
speed, and a longer one waits ``period - budget`` per budget it spends, less the part of a period that had
already passed when it started. On a 0.095-core lab device (1 ms every 10.5 ms) a stage of 3.3 ms of CPU
takes about 27 ms, not 35; on a 0.8-core gateway (8 ms every 10 ms) one of 1.3 ms takes 1.3 ms, not 1.6.

:func:`quota_wall_s` is the expected wall time of a burst that starts with the budget full (the node was
idle since its last frame) at a uniformly random point of the period: what a stream of frames that does
not load the node to its quota sees. A node kept busy up to its quota has no budget left when a frame
starts, and its stages take about ``cpu / share``: the linear price the solvers use, the upper bound.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["quota_wall_s", "burst_wall_s"]

_PHASES = 512  # points of the period the start is averaged over


def burst_wall_s(cpu_s: float, budget_s: float, period_s: float, refill_in_s: float) -> float:
    """Wall time of ``cpu_s`` of work that starts with the budget full and the next refill ``refill_in_s`` away.

    >>> burst_wall_s(0.5, 1.0, 10.0, 5.0)   # within the budget: full speed
    0.5
    >>> burst_wall_s(2.5, 1.0, 10.0, 5.0)   # 1 now, wait to the refill at 5, 1, wait a period, 0.5
    15.5
    >>> burst_wall_s(1.5, 1.0, 10.0, 0.5)   # the refill comes after 0.5 run: the budget is whole again
    1.5
    """
    if cpu_s <= 0:
        return 0.0
    if cpu_s <= min(budget_s, refill_in_s):
        return cpu_s
    if refill_in_s <= budget_s:  # the period ends while it runs: what it ran is forgiven
        done, wall = refill_in_s, refill_in_s
    else:  # the budget runs out first: wait for the refill
        done, wall = budget_s, refill_in_s
    left = cpu_s - done
    waits = max(math.ceil(left / budget_s - 1e-12) - 1, 0)  # whole periods it needs beyond this one
    return wall + waits * period_s + (left - waits * budget_s)


def quota_wall_s(cpu_s: float, budget_s: float | None, period_s: float | None) -> float:
    """Expected wall time of ``cpu_s`` of CPU on a quota of ``budget_s`` every ``period_s``, started with the
    budget full at a uniformly random point of the period; ``cpu_s`` itself without a quota (``None``) or
    with one of a whole core or more.

    >>> round(quota_wall_s(0.0005, 0.001, 0.0105), 9)          # shorter than the budget
    0.0005
    >>> round(quota_wall_s(0.0033, 0.001, 0.0105) * 1e3, 1)    # a lab device: not 0.0033 / 0.095 = 34.7 ms
    26.9
    >>> round(quota_wall_s(0.3, 0.001, 0.0105) / (0.3 / (0.001 / 0.0105)), 2)  # long stages: the share's price
    1.0
    >>> quota_wall_s(0.01, None, None)
    0.01
    """
    if cpu_s <= 0:
        return 0.0
    if not budget_s or not period_s or budget_s >= period_s:
        return float(cpu_s)
    phases = (np.arange(_PHASES) + 0.5) * (period_s / _PHASES)
    return float(np.mean([burst_wall_s(cpu_s, budget_s, period_s, float(r)) for r in phases]))
