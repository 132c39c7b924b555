"""Emulation: links shaped to their bandwidth and latency, compute stretched to the tier's speed.

A :class:`LinkShaper` is a virtual clock per link: a frame of ``B`` bytes keeps
the link busy for ``8 B / bandwidth`` (frames queue behind each other) and
arrives ``latency`` (+ jitter) after its last byte left. Loss is modelled as a
retransmission: with probability ``loss`` the frame's serialisation is paid twice.
Compute: a stage runs for real, then waits out the difference to the tier's
time: the plan's predicted time of the stage on its tier (x frames in the
batch), or ``real x scale`` without a prediction (``scale`` = 1 / speed). The
prediction is the better target on a shared machine, where real time is
inflated by the other stages running beside it; a stage slower than its target
waits nothing, and the report shows both.
"""

from __future__ import annotations

import asyncio
import random
import time

__all__ = ["LinkShaper", "Timeline", "stretch_s", "sleep_until"]


async def sleep_until(deadline: float, clock=time.perf_counter) -> None:
    """Sleep until ``clock() >= deadline``; asyncio wakes up to ~1 ms late.

    No spinning: on a shared machine a spinning stage steals the CPU the other stages
    need. Callers keep their own timelines (:class:`Timeline`), so a late wake-up
    delays one frame by at most a millisecond and never accumulates into throughput.
    """
    left = deadline - clock()
    if left > 0:
        await asyncio.sleep(left)


class Timeline:
    """A resource busy back to back on a virtual clock: wake-up lateness does not accumulate.

    >>> t = Timeline()
    >>> t.book(10.0, 0.02), t.book(10.0205, 0.02)   # the second starts when the first was due, not 0.5 ms later
    ((10.0, 10.02), (10.02, 10.04))
    >>> t.book(11.0, 0.02)                           # idle for a while: starts now
    (11.0, 11.02)
    """

    def __init__(self, slack_s: float = 0.002) -> None:
        self.free_at = float("-inf")
        self.slack_s = slack_s

    def book(self, now: float, duration_s: float) -> tuple[float, float]:
        """``(start, end)`` of ``duration_s`` of work that is ready at ``now``."""
        start = self.free_at if now - self.free_at < self.slack_s else now
        start = max(start, self.free_at)
        self.free_at = start + duration_s
        return start, self.free_at


class LinkShaper:
    """Timing of frames on one emulated link.

    >>> link = LinkShaper(bandwidth_mbps=8, latency_ms=10)
    >>> link.schedule(1_000_000, now=0.0)        # 1 MB at 8 Mbit/s = 1 s on the wire, + 10 ms
    (1.0, 1.01)
    >>> link.schedule(1_000_000, now=0.5)        # queues behind the first frame
    (2.0, 2.01)
    """

    def __init__(
        self, bandwidth_mbps: float, latency_ms: float, jitter_ms: float = 0.0, loss: float = 0.0, seed: int | None = None
    ) -> None:
        self.bytes_per_s = bandwidth_mbps * 1e6 / 8
        self.latency_s = latency_ms / 1e3
        self.jitter_s = jitter_ms / 1e3
        self.loss = loss
        self.wire = Timeline()
        self.rng = random.Random(seed)

    def set_bandwidth(self, bandwidth_mbps: float) -> None:
        """A new bandwidth from now on (an emulated condition); frames already on the wire keep their times."""
        self.bytes_per_s = bandwidth_mbps * 1e6 / 8

    def schedule(self, nbytes: int, now: float) -> tuple[float, float]:
        """``(link free again, frame arrives)`` for a frame handed to the link at ``now``."""
        wire = nbytes / self.bytes_per_s
        if self.loss and self.rng.random() < self.loss:
            wire *= 2
        _, free = self.wire.book(now, wire)
        jitter = self.rng.uniform(-self.jitter_s, self.jitter_s) if self.jitter_s else 0.0
        return free, free + max(self.latency_s + jitter, 0.0)


def stretch_s(real_s: float, scale: float) -> float:
    """How long to wait after a stage that ran ``real_s`` on this host to emulate a tier ``scale`` times slower.

    >>> stretch_s(0.01, 4.0)
    0.03
    >>> stretch_s(0.01, 0.5)                     # a faster tier cannot be emulated: no wait
    0.0
    """
    return round(max(real_s * (scale - 1.0), 0.0), 12)
