"""The sending side of a link, inside an actor: credits, emulated timing, replay after a restart.

Frames handed to :meth:`Uplink.send` are kept in a :class:`ReplayBuffer` until the
sink acknowledges them. At most ``credits`` pushes are in flight to the parent.
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
from .wire import wire_nbytes

__all__ = ["Uplink"]

log = logging.getLogger(__name__)


def _is_actor_failure(exc: BaseException) -> bool:
    return isinstance(exc, unavailable())


class Uplink:
    def __init__(
        self, parent, metrics: StageMetrics, credits: int = 4, shaper: LinkShaper | None = None, watch_s: float = 0.5, name: str = "uplink"
    ) -> None:
        self.parent = parent
        self.metrics = metrics
        self.credits = asyncio.Semaphore(credits)
        self.shaper = shaper
        self.watch_s = watch_s
        self.name = name
        self.replay = ReplayBuffer()
        self.parent_incarnation: str | None = None
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=max(credits, 1))
        self._replaying = asyncio.Lock()
        self._last_arrival = 0.0
        self._tasks: list[asyncio.Task] = []
        self._inflight: set[asyncio.Task] = set()
        self._background: set[asyncio.Task] = set()  # replays started from callbacks (_spawn)
        self._outstanding: set[tuple[int, int]] = set()  # keys queued or being pushed: a safety-net replay skips them
        self._calls_out, self._busy_since = 0, 0.0  # pushes in flight, and since when one has been (real links)
        self._replayed_at = 0.0
        self._last_reply = 0.0
        # what the link carried and how long it was busy sending (emulated: serialisation on the shaped
        # link; real: the push calls): bytes / busy time is the link's measured bandwidth (monitor.py)
        self.wire_bytes_total = 0
        self.wire_busy_s_total = 0.0
        self.wire_calls_total = 0  # calls on a real (unshaped) link, whose fixed time is not the wire's

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
            hold_until = None
            started = time.perf_counter()
            if self.shaper is not None:
                free, arrive = self.shaper.schedule(nbytes, started)
                self.wire_bytes_total += nbytes
                self.wire_busy_s_total += max(free - max(started, free - nbytes / self.shaper.bytes_per_s), 0.0)
                arrive = max(arrive, self._last_arrival)  # a link does not reorder
                self._last_arrival = arrive
                hold_until = time.time() + (arrive - started)  # the receiver holds the frames until then
            if self.shaper is None and not self._calls_out:  # a real link: busy while any call is out
                self._busy_since = started
            self._calls_out += 1
            task = asyncio.ensure_future(self._deliver(data, nbytes, hold_until, started, [k for k, _ in batch]))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            if self.shaper is not None:
                await sleep_until(free)  # the link is busy serialising these frames

    async def _deliver(self, data: list, nbytes: int, hold_until: float | None, started: float, keys: list) -> None:
        try:
            reply = await self.parent.push.remote(data, hold_until, time.time() - (time.perf_counter() - started))
            for d in data:
                self.metrics.link_bytes.add(wire_nbytes(d))
            self.metrics.link_s.add(time.perf_counter() - started)
            if self.shaper is None:  # a real link: the calls' round trips, the ends' work included
                self.wire_bytes_total += nbytes
                self.wire_calls_total += 1
            self.metrics.frames_out += len(data)
            self._last_reply = time.perf_counter()
            if reply.get("acked"):
                self.replay.ack(reply["acked"])  # acknowledgements ride on push replies
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
            self._calls_out -= 1
            if self.shaper is None:  # overlapping calls count once: the time any was out, counted as each returns
                now = time.perf_counter()
                self.wire_busy_s_total += now - self._busy_since
                self._busy_since = now
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
