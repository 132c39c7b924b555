"""Compute clocks: how a stage node books the time its tier spent on a batch.

The executor runs each batch for real, then asks its clock when the tier would be done with it:

- :class:`RealCompute`: never later than now. The tier's time is the real time.
- :class:`EmulatedCompute`: the tier's time, back to back on a virtual clock
  (:class:`runtime.emulation.Timeline`): the plan's predicted time per frame x frames, or
  ``real x scale`` without a prediction, x the slowdown of a ``speed`` condition. The executor holds
  the batch's results until then. A batch slower on this host than its tier's time waits nothing and
  is counted (:meth:`runtime.metrics.StageMetrics.note_emulation`).

Both count ``tier_s_total`` (what the tier spent) and ``tier_planned_s_total`` (what the plan predicted
for the same frames), which live adaptation compares.

>>> real = RealCompute()
>>> real.book(start=10.0, real_s=0.004, frames=2, per_frame_s=0.01), real.tier_s_total, real.tier_planned_s_total
(None, 0.004, 0.02)
"""

from __future__ import annotations

import time

from ..emulation import Timeline, stretch_s
from ..metrics import StageMetrics

__all__ = ["EmulatedCompute", "RealCompute", "compute_clock"]


class RealCompute:
    """Real compute: the tier's time is the real time; nothing to wait for."""

    def __init__(self) -> None:
        self.tier_s_total = 0.0  # the tier's time spent on frames
        self.tier_planned_s_total = 0.0  # what the plans' nominal figures predicted for the same frames

    def set_speed(self, speed: float | None) -> None:
        """A 'speed' condition: real compute runs at this host's speed whatever it says."""

    def book(self, start: float, real_s: float, frames: int, per_frame_s: float | None) -> float | None:
        """A batch of ``frames`` taken at ``start`` (``time.perf_counter()``) that ran ``real_s``; the plan
        predicts ``per_frame_s`` a frame (None: no prediction). Returns when to release its results
        (None: now)."""
        self.tier_s_total += real_s
        if per_frame_s is not None:
            self.tier_planned_s_total += per_frame_s * frames
        return None


class EmulatedCompute(RealCompute):
    """Compute stretched to the tier's time.

    Args:
        metrics: the node's metrics (emulation budget, waits).
        scale: seconds on this tier per second on this host (used without a prediction).
        speed: the tier's nominal speed (a 'speed' condition is relative to it); None: none.
    """

    def __init__(self, metrics: StageMetrics, scale: float = 1.0, speed: float | None = None) -> None:
        super().__init__()
        self.metrics = metrics
        self.scale = scale
        self.speed = speed
        self.slowdown = 1.0  # how much slower than its tier this node computes now (a 'speed' condition)
        self.timeline = Timeline()  # emulated compute, back to back on a virtual clock

    def set_speed(self, speed: float | None) -> None:
        """This node computes at ``speed`` from now on (an emulated condition)."""
        self.slowdown = (self.speed / speed) if (speed and self.speed) else 1.0

    def book(self, start: float, real_s: float, frames: int, per_frame_s: float | None) -> float | None:
        """As :meth:`RealCompute.book`; returns when the tier is done (``time.perf_counter()``).

        The tier's time counts from when the stage took the batch (packing included)."""
        if per_frame_s is not None:
            target = per_frame_s * frames * self.slowdown
            self.tier_planned_s_total += per_frame_s * frames
        else:
            target = (real_s + stretch_s(real_s, self.scale)) * self.slowdown
        started, due = self.timeline.book(start, target)
        self.metrics.note_emulation(time.perf_counter() - start, target)  # a stage slower here than its tier: said
        self.tier_s_total += due - started
        self.metrics.emulated_wait_s.add(max(due - time.perf_counter(), 0.0))
        return due


def compute_clock(emulate: bool, metrics: StageMetrics, scale: float = 1.0, speed: float | None = None) -> RealCompute:
    """The clock of a node that emulates its tier's compute, or of one that computes for real."""
    return EmulatedCompute(metrics, scale, speed) if emulate else RealCompute()
