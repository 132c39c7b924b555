"""Timing ops where they run: a copy of the graph with a clock stamp after every op.

Used by ``capture(timing="measured")`` on this host, and by ``tierpipe profile --address`` on a
node of every tier (``runtime/profiling.py``), whose table ``CostModel(profiles=...)`` takes.
"""

from __future__ import annotations

import copy
import functools
import statistics
import time

import torch.fx as fx

__all__ = ["time_nodes"]


def time_nodes(
    gm: fx.GraphModule,
    example_inputs: tuple,
    repeats: int,
    warmup: int,
    stat: str = "median",
    min_seconds: float = 0.0,
    every_s: float = 0.0,
    clock: str = "wall",
) -> dict[str, float]:
    """Wall time of every op, measured inside the generated forward: the median of ``repeats`` runs
    (this host, free), or with ``stat="mean"`` the mean over at least ``repeats`` runs and
    ``min_seconds`` (a CPU under a quota: an op's mean includes its share of the waits the quota
    imposes, so the ops add up to the forward's real time there; a median would miss the waits).

    ``every_s``: start a run at most every ``every_s`` seconds, as frames arrive at a stage (a camera at 10
    frames/s: 0.1). An op run now and then is slower than in a tight loop (cold caches and branch
    predictors, Python's and torch's dispatch): ops of a few microseconds take 2-3x longer.

    ``clock="cpu"``: each op's CPU time (this thread's), not its wall time: under a CPU quota a short
    burst runs at full speed and a long one waits, so wall times of ops depend on where the quota's
    period fell; their CPU time does not (``tierpipe profile`` divides it by the quota's cores).

    A copy of the graph gets a ``perf_counter`` stamp before the first op and
    after every op, so the ops run as fast as in eager mode; an op's time is the
    gap between its two stamps, less the stamp's own cost.
    """
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {sorted(CLOCKS)}, not {clock!r}")
    stamps: list[float] = []
    stamp = _Stamp(stamps, CLOCKS[clock])
    graph = copy.deepcopy(gm.graph)
    ops = [n for n in graph.nodes if n.op not in ("placeholder", "output")]
    if not ops:
        return {}
    with graph.inserting_before(ops[0]):
        graph.call_function(stamp, ())
    for n in ops:
        with graph.inserting_after(n):
            graph.call_function(stamp, ())
    stamped = fx.GraphModule(gm, graph)
    cost = _stamp_cost(clock)
    samples: dict[str, list[float]] = {n.name: [] for n in ops}
    began = None
    run_began = time.perf_counter()
    i = 0
    while i < warmup + repeats or (began is not None and time.perf_counter() - began < min_seconds):
        if i == warmup:
            began = time.perf_counter()
        i += 1
        stamps.clear()
        if every_s and i > 1:  # the idle time before the next frame: not timed
            time.sleep(max(every_s - (time.perf_counter() - run_began), 0.0))
        run_began = time.perf_counter()
        stamped(*example_inputs)
        if i > warmup:
            for n, before, after in zip(ops, stamps, stamps[1:]):
                samples[n.name].append(max(after - before - cost, 0.0))
    reduce = statistics.median if stat == "median" else statistics.fmean
    return {name: reduce(v) for name, v in samples.items()}


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


class _Stamp:
    """A callable fx can put in a graph: appends the clock's time (``perf_counter()``) to a list."""

    __name__ = "tierpipe_stamp"

    def __init__(self, stamps: list[float], clock=time.perf_counter) -> None:
        self.stamps = stamps
        self.clock = clock

    def __call__(self) -> None:
        self.stamps.append(self.clock())


@functools.lru_cache(maxsize=2)
def _stamp_cost(clock: str = "wall") -> float:
    stamps: list[float] = []
    stamp = _Stamp(stamps, CLOCKS[clock])
    for _ in range(3):
        stamps.clear()
        for _ in range(1000):
            stamp()
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1)
