"""The sending side of a link, inside an actor: credits, replay after a restart, and a link model.

Frames handed to :meth:`Uplink.send` are kept in a :class:`ReplayBuffer` until the
sink acknowledges them (:mod:`runtime.node.acks`). At most ``credits`` pushes are in flight
to the parent. What the link costs (an emulated link's wire time, a real link's busy time)
is its link model's (:mod:`runtime.node.links`): the sending code is the same for both.
When the parent dies (a push fails) or comes back as a new incarnation (seen on a
push reply or by the watchdog), every unacknowledged frame is sent again in order;
the sink drops the duplicates.

The parent is anything with ``push.remote(list_of_frames)`` and ``hello.remote()``
returning awaitables: a Ray actor handle, or a fake in tests.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .emulation import LinkShaper, sleep_until
from .errors import unavailable
from .flow import ReplayBuffer
from .metrics import StageMetrics
from .node.links import link_model
from .wire import wire_nbytes

__all__ = ["Uplink"]

log = logging.getLogger(__name__)


def _is_actor_failure(exc: BaseException) -> bool:
    return isinstance(exc, unavailable())


class Uplink:
    """Sends one node's packed frames to its parent.

    Args:
        parent: the parent node's handle (``push.remote``, ``hello.remote``).
        metrics: the node's metrics (link figures, replays, restarts seen).
        credits: pushes in flight at most.
        shaper: the emulated link's timing (:class:`runtime.emulation.LinkShaper`); None: a real link.
        watch_s: how often an idle uplink with unacknowledged frames checks its parent is the same.
        name: for log lines (the node's ``where``).
    """

    def __init__(
        self, parent, metrics: StageMetrics, credits: int = 4, shaper: LinkShaper | None = None, watch_s: float = 0.5, name: str = "uplink"
    ) -> None:
        self.parent = parent
        self.metrics = metrics
        self.credits = asyncio.Semaphore(credits)
        self.link = link_model(shaper)
        self.watch_s = watch_s
        self.name = name
        self.replay = ReplayBuffer()
        self.parent_incarnation: str | None = None
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=max(credits, 1))
        self._replaying = asyncio.Lock()
        self._tasks: list[asyncio.Task] = []
        self._inflight: set[asyncio.Task] = set()
        self._background: set[asyncio.Task] = set()  # replays started from callbacks (_spawn)
        self._outstanding: set[tuple[int, int]] = set()  # keys queued or being pushed: a safety-net replay skips them
        self._replayed_at = 0.0
        self._last_reply = 0.0

    # what the link carried and how long it was busy sending (emulated: serialisation on the shaped
    # link; real: the push calls): bytes / busy time is the link's measured bandwidth (monitor.py)
    @property
    def wire_bytes_total(self) -> int:
        return self.link.wire_bytes_total

    @property
    def wire_busy_s_total(self) -> float:
        return self.link.wire_busy_s_total

    @property
    def wire_calls_total(self) -> int:
        """Calls on a real link, whose fixed time is not the wire's (0 on an emulated one)."""
        return self.link.wire_calls_total

    def _spawn(self, coro) -> asyncio.Task:
        """Start a background task and hold it until it is done: the event loop keeps only a weak reference
        to a task, so one nobody holds may be collected mid-replay (and frames never re-sent)."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.ensure_future(self._sender()), asyncio.ensure_future(self._watch())]

    def stop(self) -> None:
        """Cancel every task this uplink started (sending, watching, pushes in flight, replays)."""
        for task in [*self._tasks, *self._inflight, *self._background]:
            task.cancel()

    async def send(self, key: tuple[int, int], data: bytes) -> None:
        """Queue one packed frame (waits when ``credits`` frames are already queued: backpressure)."""
        self.replay.add(key, data)
        self._outstanding.add(key)
        await self._queue.put((key, data))

    def ack(self, watermarks: dict[int, int]) -> None:
        self.replay.ack(watermarks)

    async def _sender(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < 16:  # frames already queued travel in one call
                batch.append(self._queue.get_nowait())
            await self.credits.acquire()
            data = [d for _, d in batch]
            nbytes = sum(wire_nbytes(d) for d in data)
            started = time.perf_counter()
            hold_s, free = self.link.send(nbytes, started)
            hold_until = None if hold_s is None else time.time() + hold_s  # the receiver holds the frames until then
            task = asyncio.ensure_future(self._deliver(data, nbytes, hold_until, started, [k for k, _ in batch]))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            if free is not None:
                await sleep_until(free)  # the link is busy serialising these frames

    async def _deliver(self, data: list, nbytes: int, hold_until: float | None, started: float, keys: list) -> None:
        carried = None  # bytes the call carried, once it came through
        try:
            reply = await self.parent.push.remote(data, hold_until, time.time() - (time.perf_counter() - started))
            for d in data:
                self.metrics.link_bytes.add(wire_nbytes(d))
            self.metrics.link_s.add(time.perf_counter() - started)
            carried = nbytes
            self.metrics.frames_out += len(data)
            self._last_reply = time.perf_counter()
            if reply.get("acked"):
                self.replay.ack(reply["acked"])  # acknowledgements ride on push replies (runtime.node.acks, rule 4)
            await self._check_incarnation(reply.get("incarnation"))
        except Exception as exc:
            if not _is_actor_failure(exc):
                log.exception("%s: push failed", self.name)
            else:
                log.warning(
                    "%s: parent unavailable (%s); will replay %d unacknowledged frames", self.name, type(exc).__name__, len(self.replay)
                )
                self._spawn(self._replay_when_back(time.perf_counter()))
        finally:
            self._outstanding.difference_update(keys)
            self.link.returned(time.perf_counter(), carried)
            self.credits.release()

    async def _check_incarnation(self, incarnation: str | None) -> None:
        if incarnation is None:
            return
        if self.parent_incarnation is None:
            self.parent_incarnation = incarnation
        elif incarnation != self.parent_incarnation:
            self.parent_incarnation = incarnation
            self.metrics.restarts_seen += 1
            self._spawn(self._replay_when_back(time.perf_counter()))

    async def _replay_when_back(self, requested_at: float | None = None, safety_net: bool = False) -> None:
        async with self._replaying:
            if requested_at is not None and self._replayed_at > requested_at:
                return  # a replay that started after this failure already covered it
            self._replayed_at = time.perf_counter()
            while True:
                try:
                    incarnation = await asyncio.wait_for(self.parent.hello.remote(), timeout=5.0)
                    break
                except Exception as exc:  # still restarting
                    log.debug("%s: parent not back yet (%s)", self.name, type(exc).__name__)
                    await asyncio.sleep(0.2)
            if incarnation != self.parent_incarnation and self.parent_incarnation is not None:
                self.metrics.restarts_seen += 1
            self.parent_incarnation = incarnation
            # the driver's safety net (a stall: maybe only a slow link) leaves frames on their way alone: re-sending
            # them would double a slow link's load; after a failure or a restart every unacknowledged frame goes again
            frames = list(self.replay.pending(self._outstanding if safety_net else frozenset()))
            for i in range(0, len(frames), 16):
                chunk = frames[i : i + 16]
                try:
                    await self.parent.push.remote(chunk)
                    self.metrics.replayed += len(chunk)
                except Exception as exc:
                    log.warning("%s: replay interrupted (%s); retrying", self.name, type(exc).__name__)
                    self._spawn(self._replay_when_back())
                    return

    async def _watch(self) -> None:
        """Notice a restarted parent even when nothing is being sent."""
        while True:
            await asyncio.sleep(self.watch_s)
            if not len(self.replay) or self._replaying.locked() or time.perf_counter() - self._last_reply < self.watch_s:
                continue  # nothing to lose, or push replies show the parent is alive
            try:
                incarnation = await asyncio.wait_for(self.parent.hello.remote(), timeout=2.0)
                await self._check_incarnation(incarnation)
            except Exception as exc:
                log.debug("%s: watchdog saw %s", self.name, type(exc).__name__)
                self._spawn(self._replay_when_back(time.perf_counter()))

    async def replay_all(self) -> int:
        """Send every unacknowledged frame again now (the driver's safety net after a stall)."""
        count = len(self.replay.pending(self._outstanding))
        await self._replay_when_back(safety_net=True)
        return count
