"""Where a stage node's finished frames go: up its uplink (a relay), or into its reorder buffer (the sink).

The executor hands every batch's frames to the node's outbox the same way (``wrap`` them before the
tier's time is booked, so packing counts in it; ``put`` them once it is due):

- :class:`RelayOutbox`: packs each frame with its link's codec and sends it up the
  :class:`runtime.uplink.Uplink` (credits, replay, the parent's incarnation). It also tracks the frames
  the node holds, taken and not yet handed to the uplink: a frame fed or replayed again while held or
  kept for replay is a repeat (:meth:`admit`).
- :class:`SinkOutbox`: keeps results in order per source, exactly once, for the driver's ``take``,
  with each result's end-to-end time.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from partition.exit_stage import ANSWER, is_exited

from ..errors import StageError
from ..flow import ReorderBuffer
from ..metrics import Series, StageMetrics, percentiles
from ..wire import ERROR, Frame, pack, shippable
from .executor import passes_through

if TYPE_CHECKING:
    from ..uplink import Uplink

__all__ = ["MAX_LATENCY_S", "RelayOutbox", "SinkOutbox"]

MAX_LATENCY_S = 3600.0  # an end-to-end time beyond this (or negative) comes from a wrong clock, not the pipeline


class RelayOutbox:
    """A relay's frames go up ``uplink``; acknowledged ones are forgotten there (:mod:`runtime.node.acks`)."""

    def __init__(self, uplink: Uplink) -> None:
        self.uplink = uplink
        self.kept = uplink.replay  # sent, not yet acknowledged
        self.holding: set[tuple[int, int]] = set()  # frames taken and not yet handed to the uplink

    def start(self) -> None:
        self.uplink.start()

    def stop(self) -> None:
        self.uplink.stop()

    def admit(self, key: tuple[int, int]) -> bool:
        """Whether frame ``key`` is new here (then held): False for a repeat, fed or replayed again while
        this node still holds it or keeps it for replay (once is enough)."""
        if key in self.holding or key in self.kept:
            return False
        self.holding.add(key)
        return True

    def release(self, keys) -> None:
        """Frames ``keys`` were not passed on (a batch failed, or a push was cut short): a replay of them
        must not be taken for a repeat."""
        kept = self.kept
        self.holding.difference_update(k for k in keys if k not in kept)

    def wrap(self, frames: list[Frame], codec: str) -> list[tuple[tuple[int, int], object]]:
        """A batch's finished frames as they go: ``(key, packed)``, packed with the link's ``codec``, or raw
        when one only travels on (an error, or an exit's answer)."""
        return [(f.key, pack(f, "raw" if passes_through(f.values) else codec)) for f in frames]

    async def put(self, items: list) -> None:
        """Send a batch's wrapped frames (waits for room: backpressure)."""
        send, holding = self.uplink.send, self.holding
        for key, data in items:
            await send(key, data)
            holding.discard(key)  # the uplink keeps it now, until it is acknowledged

    def set_bandwidth(self, bandwidth_mbps: float) -> None:
        self.uplink.link.set_bandwidth(bandwidth_mbps)

    async def replay_all(self) -> int:
        return await self.uplink.replay_all()

    async def take(self, max_frames: int, timeout_s: float) -> dict:
        """A relay delivers nothing to the driver (it waits ``timeout_s``, as a sink with nothing ready)."""
        await asyncio.sleep(timeout_s)
        return {"results": [], "duplicates": 0}

    def advance(self, watermarks: dict) -> None:
        """A relay has nothing to skip: its acknowledgements come through :mod:`runtime.node.acks`."""

    def totals(self) -> dict:
        return self.uplink.link.totals()

    def report(self) -> dict:
        return {"unacked": len(self.kept)}


class SinkOutbox:
    """The sink's results, released in order per source, once each.

    Args:
        metrics: the node's metrics (``bad_timestamps``).
    """

    def __init__(self, metrics: StageMetrics) -> None:
        self.metrics = metrics
        self.kept = None  # a sink keeps nothing for replay
        self.results: ReorderBuffer = ReorderBuffer()
        self.e2e = Series()  # end-to-end latency of the results delivered
        self.ready = asyncio.Event()  # set when a result may be ready
        self.spill: list = []  # released in order, beyond what the last take could carry

    def start(self) -> None:
        """Nothing runs in the background."""

    def stop(self) -> None:
        """Nothing runs in the background."""

    def admit(self, key: tuple[int, int]) -> bool:
        """Always: the reorder buffer drops (and counts) duplicates once they are done."""
        return True

    def release(self, keys) -> None:
        """Nothing is held."""

    def wrap(self, frames: list[Frame], codec: str) -> list[Frame]:
        """Finished frames stay as they are (never packed; their outputs need not be a dict)."""
        return frames

    async def put(self, frames: list[Frame]) -> None:
        """Keep a batch's results with their end-to-end times; duplicates are dropped and counted."""
        add, e2e = self.results.add, self.e2e
        for frame in frames:
            latency = time.time() - frame.ts[0]
            if add(frame.source, frame.seq, (_result(frame.values), latency)):
                if 0.0 <= latency < MAX_LATENCY_S:
                    e2e.add(latency)
                else:  # a sender's clock (or a forged frame) is off: keep it out of the figures
                    self.metrics.bad_timestamps += 1
                self.ready.set()

    def set_bandwidth(self, bandwidth_mbps: float) -> None:
        """A sink has no uplink."""

    async def replay_all(self) -> int:
        return 0

    async def take(self, max_frames: int, timeout_s: float) -> dict:
        """Up to ``max_frames`` results released in order per source, as ``(source, seq, output, latency_s)``,
        waiting up to ``timeout_s`` for the first; what one take cannot carry waits for the next."""
        if not self._has_ready():
            self.ready.clear()
            try:
                await asyncio.wait_for(self.ready.wait(), timeout_s)
            except asyncio.TimeoutError:
                pass
        out = self.spill + self.results.ready() if self.spill else self.results.ready()
        out, self.spill = out[:max_frames], out[max_frames:]
        results = [(s, q, shippable(v[0]), v[1]) for s, q, v in out]  # tensors travel as numpy arrays
        return {"results": results, "duplicates": self.results.duplicates}

    def _has_ready(self) -> bool:
        return bool(self.spill) or any(self.results.next_seq.get(s, 0) in w for s, w in self.results.pending.items())

    def advance(self, watermarks: dict) -> None:
        """After a restart, skip what the driver already has."""
        self.results.advance({int(k): int(v) for k, v in watermarks.items()})

    def totals(self) -> dict:
        return {}

    def report(self) -> dict:
        return {
            "e2e_latency_s": self.e2e.summary(),
            "e2e_recent_s": percentiles(self.e2e.recent(1000)),
            "duplicates_dropped": self.results.duplicates,
        }


def _result(values):
    """What the driver gets for a frame: its outputs, an exit's answer, or the error that stopped it."""
    if isinstance(values, dict) and ERROR in values:
        return StageError(values[ERROR])
    if is_exited(values):
        return values[ANSWER]
    return values
