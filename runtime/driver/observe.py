"""Observation: a part of the driver, without Ray. The per-second timeline every way of running records,
the wall clock of the run, and (with ``adapt``) the adapter's round once a second."""

from __future__ import annotations

import time
from collections.abc import Callable

from ..timeline import TimelineRecorder

__all__ = ["Observer"]


class Observer:
    """Feeds new results to the timeline and, once a second, the nodes' counters to the adapter.

    ``view`` is what the adapter may read and do (:class:`runtime.driver.DriverView`).
    """

    def __init__(self, adapter=None, clock: Callable[[], float] = time.perf_counter) -> None:
        self.adapter = adapter  # runtime.adapt.Adapter, or None
        self.clock = clock
        self.timeline: TimelineRecorder | None = None  # from the first poll on
        self.adapted_at = 0.0
        self.wall_start = 0.0  # the first poll
        self.wall_s = 0.0  # from the first poll to the last

    def begin(self) -> None:
        """A step starts: the run's wall clock starts with the first."""
        if not self.wall_start:
            self.wall_start = self.clock()

    def observe(self, view, results: list, version: int, counters: Callable[[], list | None]) -> None:
        """Record ``results`` (new ones only); a round of adaptation when one is due (``counters()``: the
        nodes' counters, or None when a node is restarting: measured next round)."""
        now = self.clock()
        self.begin()
        if self.timeline is None:
            self.timeline = TimelineRecorder(now)
            if self.adapter is not None:
                self.adapter.attach(view, now)
        self.timeline.add(results, version)
        if self.adapter is not None and now - self.adapted_at >= 1.0:
            self.adapted_at = now
            got = counters()
            if got is not None:
                self.adapter.step(view, got)
            self.adapter.step_s += self.clock() - now
        self.wall_s = self.clock() - self.wall_start
