"""The per-second timeline of a stream: results, p99 latency, plan version; and each camera's gaps between results."""

from __future__ import annotations

import time
from collections import deque

import numpy as np

__all__ = ["TimelineRecorder"]


class TimelineRecorder:
    """Per wall-clock second of a stream: results delivered, their p99 latency, the plan version new frames
    start on; and, per camera, the gaps between its consecutive results (for ``pause_ms``)."""

    def __init__(self, start_s: float | None = None, keep_s: int = 3600) -> None:
        self.start_s = start_s if start_s is not None else time.perf_counter()
        self.rows: deque[dict] = deque(maxlen=keep_s)  # the last hour: memory stays flat
        self._latencies: list[float] = []
        self._second = 0
        self._last: dict[int, float] = {}  # source -> when its last result came
        self.gaps: deque[tuple[float, float]] = deque(maxlen=100_000)  # (at_s, gap_s) between one source's results

    def add(self, results, version: int) -> None:
        now = time.perf_counter() - self.start_s
        while now >= self._second + 1:
            lat = np.asarray(self._latencies)
            self.rows.append(
                {
                    "t_s": self._second,
                    "fps": float(len(lat)),
                    "p99_ms": float(np.percentile(lat, 99) * 1e3) if len(lat) else None,
                    "plan_version": version,
                }
            )
            self._latencies = []
            self._second += 1
        for r in results:
            self._latencies.append(r.latency_s)
            if r.source in self._last:
                self.gaps.append((now, now - self._last[r.source]))
            self._last[r.source] = now

    def longest_gap_ms(self, start_s: float, end_s: float) -> float:
        """The longest a camera waited between two of its results, for results in ``[start_s, end_s]``."""
        inside = [g for at, g in self.gaps if start_s <= at <= end_s]
        return max(inside, default=0.0) * 1e3
