"""The stage actor: one instance per tier node; device instances take their node's frames from the driver.

A plain class (async methods); :mod:`runtime.pipeline` wraps it with
``ray.remote`` at the edge. A stage receives packed frames (``push``), checks and
decodes them, batches what is queued (fan-in), runs its own stage module, and
sends the results up its :class:`Uplink` (the sink keeps them in order for the
driver instead). Each actor holds only its own stage module.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid

import torch

from partition.exit_stage import ANSWER, is_exited, settle
from partition.split import INLINE_BELOW_S, Stage

from .batching import BatchRunner
from .emulation import LinkShaper, Timeline, sleep_until, stretch_s
from .errors import StageError, UnknownPlanError
from .flow import ReorderBuffer
from .metrics import Series, StageMetrics, percentiles
from .nodecpu import host_battery_pct, join_node_cgroup
from .stage_config import StageConfig
from .uplink import Uplink
from .versions import PlanVersions, Version, freeze_heap, run_locked
from .wire import ERROR as _ERROR
from .wire import Frame, pack, shippable, unpack

__all__ = ["StageConfig", "StageWorker"]

MAX_LATENCY_S = 3600.0  # an end-to-end time beyond this (or negative) comes from a wrong clock, not the pipeline

log = logging.getLogger(__name__)


class StageWorker(PlanVersions):
    """One instance of one stage. Ray restarts it when it dies; its senders replay what was lost.

    It holds one stage module per plan version (:class:`runtime.versions.Version`): frames carry the
    version they started on and finish on it, so a plan switch needs no pause. A restarted instance
    fetches the versions it lacks from the pipeline's registry when their first frame arrives.
    """

    def __init__(
        self, cfg: StageConfig, stage: Stage, parent=None, registry=None, freeze: bool = True, batchable: bool | None = None
    ) -> None:
        torch.set_num_threads(cfg.threads)
        self.cgroup = join_node_cgroup(cfg.where)  # on a lab host: the tier's CPU quota from here on
        self.cfg = cfg
        self.incarnation = uuid.uuid4().hex
        self.metrics = StageMetrics(cfg.tier_name, cfg.node)
        self.e2e = Series()
        device = cfg.device if (cfg.device == "cuda" and torch.cuda.is_available()) else "cpu"
        self.device = device
        runner = BatchRunner(stage, cfg.expected, device=device, max_batch=cfg.max_batch, batchable=batchable)  # no probe if known
        self.versions: dict[int, Version] = {0: Version(runner, cfg.expected, cfg.codec_up, cfg.emulated_compute_s)}
        self._specs = {0: cfg.expected}  # what each held plan version's frames carry (for unpack)
        self.registry = registry
        self.parent = parent
        self.uplink: Uplink | None = None
        self.results: ReorderBuffer = ReorderBuffer()
        self.delivered: dict[int, int] = {}
        self._queue: asyncio.Queue | None = None
        self._ready = asyncio.Event()
        self._worker: asyncio.Task | None = None
        self._inline = False  # run the stage on the event loop (set from measured compute)
        self.pool = None  # a packed process's StagePool: frames of its nodes that run the same stage, run together
        self.compute_timeline = Timeline()  # emulated compute, back to back on a virtual clock
        self.acked: dict[int, int] = {}  # delivered watermarks the driver announced (via take or the parent)
        self.clock_t0: float | None = None  # wall time the stream started (conditions count from it)
        self.now: dict[str, float] = {}  # emulated conditions in force: bandwidth_mbps, speed, battery_pct
        self._conditions: asyncio.Task | None = None
        self.tier_s_total = 0.0  # the tier's time spent on frames (emulated where emulation is on)
        self.tier_planned_s_total = 0.0  # what the plans' nominal figures predicted for the same frames
        self.frames_by_plan: dict[int, int] = {}
        self._holding: set[tuple[int, int]] = set()  # frames taken and not yet handed to the uplink
        log.info(
            "%s up: incarnation %s, batchable=%s, device=%s", cfg.where, self.incarnation[:8], self.versions[0].runner.batchable, device
        )
        if freeze:  # a process hosting many nodes freezes once (packing.py)
            freeze_heap()

    def _start(self) -> None:
        if self._worker is not None:
            return
        self._queue = asyncio.Queue(maxsize=self.cfg.queue_frames)
        if self.parent is not None:
            shaper = LinkShaper(**self.cfg.link) if (self.cfg.emulate and self.cfg.link) else None
            self.uplink = Uplink(self.parent, self.metrics, self.cfg.credits, shaper, name=self.cfg.where)
            self.uplink.start()
        self._worker = asyncio.ensure_future(self._work())

    # ------------------------------------------------------------------ calls
    async def hello(self) -> str:
        self._start()
        return self.incarnation

    async def push(self, frames: list, hold_until: float | None = None, sent_at: float | None = None) -> dict:
        """Accept packed frames. Malformed ones are rejected (typed error, counted); the stage keeps running.

        ``hold_until`` (wall clock): an emulated link delivers the frames only then; the real
        transfer overlaps the emulated one instead of adding to it.
        """
        self._start()
        if hold_until is not None:
            await sleep_until(hold_until, time.time)
        rejected = []
        for data in frames:
            try:
                try:
                    frame = self._decode(data)
                except UnknownPlanError as exc:
                    await self._fetch(exc.version)  # a restarted instance catches up with the plan
                    frame = self._decode(data)
            except Exception as exc:  # unpack is total (WireError); anything else is counted all the same
                self.metrics.rejected += 1
                self.metrics.last_reject = str(exc)
                rejected.append(str(exc))
                log.warning("%s", exc)
                continue
            if self.uplink is not None and (frame.key in self._holding or frame.key in self.uplink.replay):
                self.metrics.repeats += 1  # fed or replayed again while this stage still holds it: once is enough
                continue
            self.metrics.frames_in += 1
            if self.uplink is not None:
                self._holding.add(frame.key)
            try:
                await self._queue.put((frame, time.perf_counter()))
            except asyncio.CancelledError:  # never queued: a replay of it must not be taken for a repeat
                self._holding.discard(frame.key)
                raise
            if sent_at is not None:
                self.metrics.inbound_s.add(time.time() - sent_at)
        return {"incarnation": self.incarnation, "accepted": len(frames) - len(rejected), "rejected": rejected, "acked": self._watermarks()}

    def _watermarks(self) -> dict[int, int]:
        """What the driver has delivered, as this stage knows it: handed down to its senders in push replies,
        so acknowledgements cost no calls of their own."""
        return self.uplink.replay.watermarks if self.uplink is not None else self.acked

    def _decode(self, data) -> Frame:
        return unpack(data, self._specs, self.cfg.where, self.cfg.max_frame_bytes, versions=True)

    async def start_clock(self, t0: float) -> None:
        """Emulation: apply this node's conditions at ``t0 + at`` (wall clock). Idempotent; a restarted
        actor catches up at once with every change already due."""
        self._start()
        if t0 == self.clock_t0 or not (self.cfg.emulate and self.cfg.conditions):
            return
        self.clock_t0 = t0
        if self._conditions is not None:
            self._conditions.cancel()
        self._conditions = asyncio.ensure_future(self._apply_conditions(t0))

    async def _apply_conditions(self, t0: float) -> None:
        for at_s, what, value in self.cfg.conditions:
            await sleep_until(t0 + at_s, time.time)
            self.now[what] = value
            if what == "bandwidth_mbps" and self.uplink is not None and self.uplink.shaper is not None:
                self.uplink.shaper.set_bandwidth(value)
            log.info("%s: %s is now %s (emulated condition at %.1f s)", self.cfg.where, what, value, at_s)

    def _slowdown(self) -> float:
        """How much slower than its tier this node computes now (a 'speed' condition)."""
        speed = self.now.get("speed")
        return (self.cfg.speed / speed) if (speed and self.cfg.speed) else 1.0

    async def ack(self, watermarks: dict) -> None:
        self.acked = watermarks  # the driver's: source -> delivered watermark
        if self.uplink is not None:
            self.uplink.ack(watermarks)  # looks up only the sources this node carries

    async def replay_all(self) -> int:
        return await self.uplink.replay_all() if self.uplink is not None else 0

    async def take(self, max_frames: int = 1024, timeout_s: float = 0.05, acked: dict | None = None) -> dict:
        """Sink only: results released in order per source, as ``(source, seq, output, latency_s)``.

        ``acked``: the driver's delivered watermarks, handed down to the senders in push replies."""
        self._start()
        if acked:
            self.acked = acked
        if not self._has_ready():
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout_s)
            except asyncio.TimeoutError:
                pass
        out = self.results.ready()[:max_frames]
        for source, seq, _ in out:
            self.delivered[source] = seq
        results = [(s, q, shippable(v[0]), v[1]) for s, q, v in out]  # tensors travel as numpy arrays
        return {"incarnation": self.incarnation, "results": results, "duplicates": self.results.duplicates}

    def _has_ready(self) -> bool:
        return any(self.results.next_seq.get(s, 0) in w for s, w in self.results.pending.items())

    async def advance(self, watermarks: dict) -> None:
        """Sink only: after a restart, skip what the driver already has."""
        self.results.advance({int(k): int(v) for k, v in watermarks.items()})

    async def counters(self) -> dict:
        """What live adaptation reads once a second: cumulative counters and conditions only (cheap:
        no percentiles; :meth:`metrics_json` adds those)."""
        out = {
            "node": self.cfg.node,
            "incarnation": self.incarnation,
            "tier_s_total": self.tier_s_total,
            "tier_planned_s_total": self.tier_planned_s_total,
            "conditions_now": dict(self.now),
        }
        if self.uplink is not None:
            out["wire_bytes_total"], out["wire_busy_s_total"] = self.uplink.wire_bytes_total, self.uplink.wire_busy_s_total
            if self.uplink.shaper is None:
                out["wire_calls_total"] = self.uplink.wire_calls_total
        emulated = self.now.get("battery_pct") if self.cfg.emulate else None
        out["battery_pct"] = emulated if emulated is not None else host_battery_pct()
        return out

    async def metrics_json(self) -> dict:
        out = {**self.metrics.to_json(), **await self.counters()}
        out["batchable"] = self.versions[max(self.versions)].runner.batchable
        out["plan_versions"] = sorted(self.versions)
        out["frames_by_plan"] = dict(self.frames_by_plan)
        out["queued"] = self._queue.qsize()  # frames waiting for the stage now
        out["cgroup"] = self.cgroup
        if self.cfg.last:
            out["e2e_latency_s"] = self.e2e.summary()
            out["e2e_recent_s"] = percentiles(self.e2e.recent(1000))
            out["duplicates_dropped"] = self.results.duplicates
        if self.uplink is not None:
            out["unacked"] = len(self.uplink.replay)
        return out

    # ------------------------------------------------------------------ sources (device stages only)
    async def feed(self, frames: list) -> dict:
        """Input frames born on this device node (packed by the driver): accepted in order, waiting for room."""
        return await self.push(frames)

    async def shutdown(self) -> None:
        """Stop the background tasks, so the process can exit quietly."""
        tasks = [self._worker, self._conditions]
        if self.uplink is not None:
            tasks += [*self.uplink._tasks, *self.uplink._inflight, *self.uplink._background]
        for task in tasks:
            if task is not None:
                task.cancel()

    async def pid(self) -> int:
        return os.getpid()

    async def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    # ------------------------------------------------------------------ work
    async def _work(self) -> None:
        while True:
            batch = [await self._queue.get()]
            first = self.versions.get(batch[0][0].plan)
            if first is not None and first.runner.batchable and self.cfg.max_batch > 1:
                deadline = time.perf_counter() + self.cfg.max_wait_s
                while len(batch) < self.cfg.max_batch:
                    left = deadline - time.perf_counter()
                    try:
                        batch.append(self._queue.get_nowait() if left <= 0 else await asyncio.wait_for(self._queue.get(), left))
                    except (asyncio.QueueEmpty, asyncio.TimeoutError):
                        break
            for group in _by_plan(batch):  # a batch runs on one plan; order is kept
                try:
                    await self._process(group)
                except Exception:  # never let one batch stop the stage; its frames may come again (replay, refeed)
                    log.exception("%s: unexpected failure on a batch", self.cfg.where)
                    if self.uplink is not None:
                        self._holding.difference_update(f.key for f, _ in group if f.key not in self.uplink.replay)

    async def _run(self, runner: BatchRunner, values: list[dict]) -> list:
        if self.pool is not None:
            return await self.pool.run(runner, values)
        if self._inline:  # a small stage: a thread hop would cost more than the compute
            return run_locked(runner, values)
        return await asyncio.to_thread(run_locked, runner, values)

    async def _run_one(self, runner: BatchRunner, frame: Frame):
        try:
            return (await self._run(runner, [frame.values]))[0]
        except Exception as exc:
            err = StageError(f"{self.cfg.where} failed on frame {frame.key}: {type(exc).__name__}: {exc}")
            log.warning("%s", err)
            return {_ERROR: str(err)}

    async def _process(self, batch: list[tuple[Frame, float]]) -> None:
        start = time.perf_counter()
        for _, received in batch:
            self.metrics.queue_s.add(start - received)
        frames = [f for f, _ in batch]
        plan = self.versions[frames[0].plan]
        self.frames_by_plan[frames[0].plan] = self.frames_by_plan.get(frames[0].plan, 0) + len(frames)
        good = [f for f in frames if not _passes(f.values)]  # error frames and exited frames only travel on
        outputs: list = []
        if good:
            try:
                values = [f.values for f in good]
                outputs = await self._run(plan.runner, values)
            except Exception as exc:
                if len(good) > 1:  # one bad frame must not fail the good ones batched with it
                    outputs = [await self._run_one(plan.runner, f) for f in good]
                else:
                    err = StageError(f"{self.cfg.where} failed on frame {good[0].key}: {type(exc).__name__}: {exc}")
                    log.warning("%s", err)
                    outputs = [{_ERROR: str(err)}]
            real = time.perf_counter() - start
            self._inline = real < INLINE_BELOW_S * len(good)
            self.metrics.compute_s.add(real)
            self.metrics.batch.add(len(good))
            self.metrics.mixed_batches += len(good) < len(frames)
            if self.cfg.debug:
                log.warning("TIERPIPE_DEBUG %s: batch %d, compute %.2f ms", self.cfg.where, len(good), real * 1e3)
        results = iter(outputs)
        now = time.time()
        ready = []
        for frame in frames:
            values = frame.values if _passes(frame.values) else settle(next(results))
            if values is not frame.values and is_exited(values):
                self.metrics.exited += 1  # answered by an exit of this stage: a result frame goes on
            frame = Frame(frame.source, frame.seq, [*frame.ts, now], values, frame.plan)
            if self.cfg.last:
                ready.append((frame, values))
            else:
                ready.append((frame, pack(frame, "raw" if _passes(values) else plan.codec_up)))
        if self.cfg.emulate and good:
            # the tier's time for this batch, counted from when the stage took it (packing included)
            if plan.emulated_compute_s is not None:
                target = plan.emulated_compute_s * len(good) * self._slowdown()
            else:
                target = (real + stretch_s(real, self.cfg.scale)) * self._slowdown()
            started, due = self.compute_timeline.book(start, target)
            self.metrics.note_emulation(time.perf_counter() - start, target)  # a stage slower here than its tier: said
            self.tier_s_total += due - started
            self.metrics.emulated_wait_s.add(max(due - time.perf_counter(), 0.0))
            await sleep_until(due)
        elif good:
            self.tier_s_total += real
        if good and plan.emulated_compute_s is not None:
            self.tier_planned_s_total += plan.emulated_compute_s * len(good)
        for frame, item in ready:
            if self.cfg.last:
                done = time.time()
                latency = done - frame.ts[0]
                if self.results.add(frame.source, frame.seq, (_result(item), latency)):
                    if 0.0 <= latency < MAX_LATENCY_S:
                        self.e2e.add(latency)
                    else:  # a sender's clock (or a forged frame) is off: keep it out of the figures
                        self.metrics.bad_timestamps += 1
                    self._ready.set()
            else:
                await self.uplink.send(frame.key, item)
                self._holding.discard(frame.key)  # the uplink holds it now, until it is acknowledged


def _by_plan(batch: list[tuple[Frame, float]]) -> list[list[tuple[Frame, float]]]:
    """Consecutive runs of frames of the same plan version."""
    groups: list[list[tuple[Frame, float]]] = []
    for item in batch:
        if groups and groups[-1][0][0].plan == item[0].plan:
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def _passes(values) -> bool:
    """An error frame or a frame an exit below answered: no stage runs on it, it travels to the sink."""
    return _ERROR in values or is_exited(values)


def _result(values):
    if isinstance(values, dict) and _ERROR in values:
        return StageError(values[_ERROR])
    if is_exited(values):
        return values[ANSWER]
    return values
