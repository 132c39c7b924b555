"""A stage node's inbox: pushed frames decoded and checked, repeats dropped, the rest queued for the executor.

A malformed frame is rejected (a typed error, counted in the metrics and named in the push reply);
the frames beside it still go on, and so does the stage. A frame of a plan version the node lacks
(a restart after a switch) waits while the version is fetched. A frame the node still holds, or keeps
for replay, is a repeat (the driver's safety net feeds and replays again what may be lost) and is
dropped. The queue is bounded: a full queue makes the sender's push wait (backpressure).
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..emulation import sleep_until
from ..errors import UnknownPlanError
from ..metrics import StageMetrics
from ..versions import PlanVersions
from ..wire import Frame, unpack
from .acks import NodeAcks

__all__ = ["Inbox"]

log = logging.getLogger(__name__)


class Inbox:
    """Takes pushed frames into one node.

    Args:
        where: the node, for errors and logs (``StageConfig.where``).
        plans: the plan versions the node holds (their input specs; fetching one it lacks).
        metrics: the node's metrics (``frames_in``, ``rejected``, ``repeats``, ``inbound_s``).
        outbox: the node's outbox: it says which frames are repeats (``admit``) and lets go of a frame
            that never got queued (``release``).
        acks: what the node knows the driver delivered (push replies carry it).
        incarnation: the node's incarnation (push replies carry it: a sender replays to a new one).
        max_frame_bytes: the largest frame accepted.
        queue_frames: frames queued at most before a push waits.
    """

    def __init__(
        self,
        where: str,
        plans: PlanVersions,
        metrics: StageMetrics,
        outbox,
        acks: NodeAcks,
        incarnation: str,
        max_frame_bytes: int = 64 << 20,
        queue_frames: int = 64,
    ) -> None:
        self.where = where
        self.plans = plans
        self.metrics = metrics
        self.outbox = outbox
        self.acks = acks
        self.incarnation = incarnation
        self.max_frame_bytes = max_frame_bytes
        self.queue: asyncio.Queue[tuple[Frame, float]] = asyncio.Queue(maxsize=queue_frames)  # (frame, perf_counter when queued)

    async def push(self, frames: list, hold_until: float | None = None, sent_at: float | None = None) -> dict:
        """Accept packed frames, in order; waits while the queue is full.

        Args:
            frames: packed frames (:func:`runtime.wire.pack`).
            hold_until: (wall clock) an emulated link delivers the frames only then; the real transfer
                overlaps the emulated one instead of adding to it.
            sent_at: (wall clock) when the sender started sending them (the inbound time is measured).

        Returns:
            The push reply: ``incarnation``, ``accepted`` (how many), ``rejected`` (why, one message each)
            and ``acked`` (the driver's watermarks as this node knows them, for the sender's replay buffer).
        """
        if hold_until is not None:
            await sleep_until(hold_until, time.time)
        rejected = []
        metrics, admit, put = self.metrics, self.outbox.admit, self.queue.put
        for data in frames:
            try:
                try:
                    frame = self.decode(data)
                except UnknownPlanError as exc:
                    await self.plans.fetch(exc.version)  # a restarted instance catches up with the plan
                    frame = self.decode(data)
            except Exception as exc:  # unpack is total (WireError); anything else is counted all the same
                metrics.rejected += 1
                metrics.last_reject = str(exc)
                rejected.append(str(exc))
                log.warning("%s", exc)
                continue
            if not admit(frame.key):
                metrics.repeats += 1
                continue
            metrics.frames_in += 1
            try:
                await put((frame, time.perf_counter()))
            except asyncio.CancelledError:  # never queued: a replay of it must not be taken for a repeat
                self.outbox.release((frame.key,))
                raise
            if sent_at is not None:
                metrics.inbound_s.add(time.time() - sent_at)
        return {"incarnation": self.incarnation, "accepted": len(frames) - len(rejected), "rejected": rejected, "acked": self.acks.reply()}

    def decode(self, data) -> Frame:
        """One packed frame, checked against the input specs of its plan version.

        Raises:
            WireError: a malformed frame (:func:`runtime.wire.unpack` says what and where).
            UnknownPlanError: a frame of a plan version this node does not hold.
        """
        return unpack(data, self.plans.specs, self.where, self.max_frame_bytes, versions=True)
