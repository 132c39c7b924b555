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

__all__ = ["LinkShaper", "stretch_s", "sleep_until"]


async def sleep_until(deadline: float, clock=time.perf_counter) -> None:
    """Sleep until ``clock() >= deadline`` to within ~0.1 ms.

    asyncio rounds its timeouts up to whole milliseconds, which would cost a 20 ms
    stage 2-5% of its frames; the last 1.5 ms are yielded away instead of slept.
    """
    left = deadline - clock()
    if left > 0.0015:
        await asyncio.sleep(left - 0.0015)
    while clock() < deadline:
        await asyncio.sleep(0)


class LinkShaper:
    """Timing of frames on one emulated link.

    >>> link = LinkShaper(bandwidth_mbps=8, latency_ms=10)
    >>> link.schedule(1_000_000, now=0.0)        # 1 MB at 8 Mbit/s = 1 s on the wire, + 10 ms
    (1.0, 1.01)
    >>> link.schedule(1_000_000, now=0.5)        # queues behind the first frame
    (2.0, 2.01)
    """

    def __init__(self, bandwidth_mbps: float, latency_ms: float, jitter_ms: float = 0.0, loss: float = 0.0,
                 seed: int | None = None) -> None:
        self.bytes_per_s = bandwidth_mbps * 1e6 / 8
        self.latency_s = latency_ms / 1e3
        self.jitter_s = jitter_ms / 1e3
        self.loss = loss
        self.busy_until = 0.0
        self.rng = random.Random(seed)

    def schedule(self, nbytes: int, now: float) -> tuple[float, float]:
        """``(link free again, frame arrives)`` for a frame handed to the link at ``now``."""
        wire = nbytes / self.bytes_per_s
        if self.loss and self.rng.random() < self.loss:
            wire *= 2
        start = max(now, self.busy_until)
        self.busy_until = start + wire
        jitter = self.rng.uniform(-self.jitter_s, self.jitter_s) if self.jitter_s else 0.0
        return self.busy_until, self.busy_until + max(self.latency_s + jitter, 0.0)


def stretch_s(real_s: float, scale: float) -> float:
    """How long to wait after a stage that ran ``real_s`` on this host to emulate a tier ``scale`` times slower.

    >>> stretch_s(0.01, 4.0)
    0.03
    >>> stretch_s(0.01, 0.5)                     # a faster tier cannot be emulated: no wait
    0.0
    """
    return round(max(real_s * (scale - 1.0), 0.0), 12)
