"""A stage node's executor: queued frames batched (fan-in), run on their plan version's stage, handed on.

One loop per node takes what the inbox queued: a frame, then more up to ``max_batch`` for at most
``max_wait_s`` when its stage batches. A batch runs on one plan version (frames finish on the plan they
started on), in order. Error frames and frames an exit below answered run nothing and travel on.
The stage runs in the process's :class:`runtime.hostshare.StagePool` when the node is packed with
others, else on the event loop when it is small (its run took under ``INLINE_BELOW_S`` a frame last time, hop aside), else in
a thread. One bad frame fails alone: a failed batch runs again frame by frame. The node's compute
clock (:mod:`runtime.node.compute`) books the tier's time; the results go to the node's outbox
(:mod:`runtime.node.outbox`) once it is due.
"""

from __future__ import annotations

import asyncio
import logging
import time

from partition.exit_stage import is_exited, settle
from partition.split import INLINE_BELOW_S

from ..batching import BatchRunner
from ..emulation import sleep_until
from ..errors import StageError
from ..metrics import StageMetrics
from ..versions import PlanVersions, run_timed
from ..wire import ERROR, Frame
from .compute import RealCompute

__all__ = ["Executor", "passes_through"]

log = logging.getLogger(__name__)


class Executor:
    """Runs one node's stage on the frames its inbox queued.

    Args:
        where: the node, for errors and logs.
        plans: the plan versions the node holds.
        queue: the inbox's queue of ``(frame, perf_counter when queued)``.
        clock: the node's compute clock (real or emulated).
        outbox: where finished frames go (``wrap`` a batch, ``put`` it once due; ``release`` a failed one's).
        metrics: the node's metrics.
        max_batch: frames in a batch at most; ``max_wait_s``: how long the first waits for more.
        debug: a timing line per batch (``TIERPIPE_DEBUG=1``).
    """

    def __init__(
        self,
        where: str,
        plans: PlanVersions,
        queue: asyncio.Queue,
        clock: RealCompute,
        outbox,
        metrics: StageMetrics,
        max_batch: int = 8,
        max_wait_s: float = 0.002,
        debug: bool = False,
    ) -> None:
        self.where = where
        self.plans = plans
        self.queue = queue
        self.clock = clock
        self.outbox = outbox
        self.metrics = metrics
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.debug = debug
        self.pool = None  # a packed process's StagePool: frames of its nodes that run the same stage, run together
        self.inline = False  # run the stage on the event loop (set from measured compute)
        self.frames_by_plan: dict[int, int] = {}

    async def run(self) -> None:
        """Take, batch and process frames until cancelled; a failed batch never stops the loop."""
        queue = self.queue
        while True:
            batch = [await queue.get()]
            first = self.plans.versions.get(batch[0][0].plan)
            if first is not None and first.runner.batchable and self.max_batch > 1:
                deadline = time.perf_counter() + self.max_wait_s
                while len(batch) < self.max_batch:
                    left = deadline - time.perf_counter()
                    try:
                        batch.append(queue.get_nowait() if left <= 0 else await asyncio.wait_for(queue.get(), left))
                    except (asyncio.QueueEmpty, asyncio.TimeoutError):
                        break
            for group in _by_plan(batch):  # a batch runs on one plan; order is kept
                try:
                    await self.process(group)
                except Exception:  # its frames may come again (replay, refeed)
                    log.exception("%s: unexpected failure on a batch", self.where)
                    self.outbox.release([f.key for f, _ in group])

    async def process(self, batch: list[tuple[Frame, float]]) -> None:
        """Run one plan version's batch of ``(frame, queued at)`` and hand the results to the outbox."""
        start = time.perf_counter()
        queue_s = self.metrics.queue_s
        frames, passing = [], []  # error frames and exited frames only travel on
        for frame, received in batch:
            queue_s.add(start - received)
            frames.append(frame)
            passing.append(passes_through(frame.values))
        version = frames[0].plan
        plan = self.plans.versions[version]
        self.frames_by_plan[version] = self.frames_by_plan.get(version, 0) + len(frames)
        good = [f for f, p in zip(frames, passing) if not p]
        outputs: list = []
        real = 0.0
        if good:
            try:
                outputs = await self._run(plan.runner, [f.values for f in good])
            except Exception as exc:
                if len(good) > 1:  # one bad frame must not fail the good ones batched with it
                    outputs = [await self._run_one(plan.runner, f) for f in good]
                else:
                    outputs = [self._failed(good[0], exc)]
            real = time.perf_counter() - start
            self.metrics.compute_s.add(real)
            self.metrics.batch.add(len(good))
            self.metrics.mixed_batches += len(good) < len(frames)
            if self.debug:
                log.warning("TIERPIPE_DEBUG %s: batch %d, compute %.2f ms", self.where, len(good), real * 1e3)
        results = iter(outputs)
        now = time.time()
        done = []
        for frame, passes in zip(frames, passing):
            if passes:
                values = frame.values
            else:
                values = settle(next(results))
                if is_exited(values):
                    self.metrics.exited += 1  # answered by an exit of this stage: a result frame goes on
            done.append(Frame(frame.source, frame.seq, [*frame.ts, now], values, frame.plan))
        ready = self.outbox.wrap(done, plan.codec_up)
        if good:
            due = self.clock.book(start, real, len(good), plan.emulated_compute_s)
            if due is not None:
                await sleep_until(due)
        await self.outbox.put(ready)

    async def _run(self, runner: BatchRunner, values: list[dict]) -> list:
        if self.pool is not None:
            return await self.pool.run(runner, values)
        if self.inline:  # a small stage: a thread hop would cost more than the compute
            outputs, took = run_timed(runner, values)
        else:
            outputs, took = await asyncio.to_thread(run_timed, runner, values)
        self.inline = took < INLINE_BELOW_S * len(values)  # the run's own time, the same on the loop and off it
        return outputs

    async def _run_one(self, runner: BatchRunner, frame: Frame):
        try:
            return (await self._run(runner, [frame.values]))[0]
        except Exception as exc:
            return self._failed(frame, exc)

    def _failed(self, frame: Frame, exc: Exception) -> dict:
        """The error frame that travels on instead of ``frame``'s outputs."""
        err = StageError(f"{self.where} failed on frame {frame.key}: {type(exc).__name__}: {exc}")
        log.warning("%s", err)
        return {ERROR: str(err)}


def _by_plan(batch: list[tuple[Frame, float]]) -> list[list[tuple[Frame, float]]]:
    """Consecutive runs of frames of the same plan version."""
    groups: list[list[tuple[Frame, float]]] = []
    for item in batch:
        if groups and groups[-1][0][0].plan == item[0].plan:
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def passes_through(values) -> bool:
    """An error frame or a frame an exit below answered: no stage runs on it, it travels to the sink."""
    return ERROR in values or is_exited(values)
