"""The stage actor: one instance per tier node; device instances take their node's frames from the driver.

A plain class (async methods); :mod:`runtime.deployment` wraps it with ``ray.remote`` at the edge (or a
packed process's :class:`runtime.packing.NodeHost` hosts it beside others). It
wires one node's parts (:mod:`runtime.node`) and only moves data in and out of them:

    push/feed -> Inbox (decode, check, drop repeats, queue) -> Executor (batch, plan version, stage,
    compute clock) -> outbox: RelayOutbox (the Uplink: credits, replay) or SinkOutbox (in order, for take)

Emulation is injected (an emulated compute clock, a shaped link); a relay and the sink differ by their
outbox. Each actor holds only its own stage module.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Sequence

import torch

from partition.split import Stage

from .batching import BatchRunner
from .emulation import LinkShaper, sleep_until
from .errors import StageError
from .flow import ReorderBuffer
from .metrics import StageMetrics
from .node.acks import NodeAcks
from .node.compute import compute_clock
from .node.executor import Executor
from .node.inbox import Inbox
from .node.outbox import RelayOutbox, SinkOutbox
from .nodecpu import host_battery_pct, join_node_cgroup
from .stage_config import StageConfig
from .uplink import Uplink
from .versions import PlanVersions, Version, freeze_heap

__all__ = ["StageConfig", "StageWorker"]

log = logging.getLogger(__name__)


class StageWorker:
    """One instance of one stage. Ray restarts it when it dies; its senders replay what was lost.

    It holds one stage module per plan version (:class:`runtime.versions.Version`): frames carry the
    version they started on and finish on it, so a plan switch needs no pause. A restarted instance
    fetches the versions it lacks from the pipeline's registry when their first frame arrives.

    Args:
        cfg: the instance's settings.
        stage: its stage module (plan version 0).
        parent: the handle of the node it sends to; None for the sink (``cfg.last``).
        registry: the pipeline's plan registry (a restarted instance fetches versions from it).
        freeze: freeze the heap once loaded (a process hosting many nodes freezes once itself).
        batchable: whether the stage batches, if known (no probe).

    Raises:
        StageError: a node that is not the sink without a parent to send to.
    """

    def __init__(
        self, cfg: StageConfig, stage: Stage, parent=None, registry=None, freeze: bool = True, batchable: bool | None = None
    ) -> None:
        torch.set_num_threads(cfg.threads)
        self.cgroup = join_node_cgroup(cfg.where)  # on a lab host: the tier's CPU quota from here on
        self.cfg = cfg
        self.incarnation = uuid.uuid4().hex
        self.metrics = StageMetrics(cfg.tier_name, cfg.node)
        self.device = cfg.device if (cfg.device == "cuda" and torch.cuda.is_available()) else "cpu"
        runner = BatchRunner(stage, cfg.expected, device=self.device, max_batch=cfg.max_batch, batchable=batchable)  # no probe if known
        self.plans = PlanVersions(cfg, self.device, registry, Version(runner, cfg.expected, cfg.codec_up, cfg.emulated_compute_s))
        self.registry = registry
        self.parent = parent
        self.clock = compute_clock(cfg.emulate, self.metrics, cfg.scale, cfg.speed)
        self.outbox = SinkOutbox(self.metrics) if cfg.last else RelayOutbox(self._uplink(cfg, parent))
        self.acks = NodeAcks(self.outbox.kept)
        self.inbox = Inbox(
            cfg.where, self.plans, self.metrics, self.outbox, self.acks, self.incarnation, cfg.max_frame_bytes, cfg.queue_frames
        )
        self.executor = Executor(
            cfg.where, self.plans, self.inbox.queue, self.clock, self.outbox, self.metrics, cfg.max_batch, cfg.max_wait_s, cfg.debug
        )
        self.clock_t0: float | None = None  # wall time the stream started (conditions count from it)
        self.now: dict[str, float] = {}  # emulated conditions in force: bandwidth_mbps, speed, battery_pct
        self._apply = {"bandwidth_mbps": self.outbox.set_bandwidth, "speed": self.clock.set_speed}  # battery: counters only
        self._worker: asyncio.Task | None = None  # the executor's loop
        self._conditions: asyncio.Task | None = None
        batches = runner.batchable
        log.info("%s up: incarnation %s, batchable=%s, device=%s", cfg.where, self.incarnation[:8], batches, self.device)
        if freeze:  # a process hosting many nodes freezes once (packing.py)
            freeze_heap()

    def _uplink(self, cfg: StageConfig, parent) -> Uplink:
        """A relay's link to its parent: shaped to the plan's link figures when emulated, else real."""
        if parent is None:
            raise StageError(f"{cfg.where} is not on the last tier but has no parent to send to: give it its parent's handle")
        shaper = LinkShaper(**cfg.link) if (cfg.emulate and cfg.link) else None
        return Uplink(parent, self.metrics, cfg.credits, shaper, name=cfg.where)

    def _start(self) -> None:
        if self._worker is not None:
            return
        self.outbox.start()
        self._worker = asyncio.ensure_future(self.executor.run())

    # what other parts of the runtime read
    @property
    def versions(self) -> dict[int, Version]:
        """The plan versions held: version -> its stage (``runner``), specs, codec, emulated time."""
        return self.plans.versions

    @property
    def pool(self):
        """The packed process's :class:`runtime.hostshare.StagePool`, or None (set by :mod:`runtime.packing`)."""
        return self.executor.pool

    @pool.setter
    def pool(self, pool) -> None:
        self.executor.pool = pool

    @property
    def results(self) -> ReorderBuffer:
        """Sink only: the results waiting for ``take``, in order per source."""
        return self.outbox.results

    # ------------------------------------------------------------------ calls
    async def hello(self) -> str:
        self._start()
        return self.incarnation

    async def push(self, frames: list, hold_until: float | None = None, sent_at: float | None = None) -> dict:
        """Accept packed frames. Malformed ones are rejected (typed error, counted); the stage keeps running.

        ``hold_until`` (wall clock): an emulated link delivers the frames only then; the real
        transfer overlaps the emulated one instead of adding to it. Returns the push reply
        (:meth:`runtime.node.inbox.Inbox.push`)."""
        self._start()
        return await self.inbox.push(frames, hold_until, sent_at)

    async def feed(self, frames: list) -> dict:
        """Input frames born on this device node (packed by the driver): accepted in order, waiting for room."""
        return await self.push(frames)

    async def prepare(
        self,
        version: int,
        stage_box: list,
        expected: dict,
        codec_up: str,
        emulated_compute_s: float | None,
        keep: Sequence[int] = (),
        same_as: int | None = None,
        batchable: bool | None = None,
    ) -> dict:
        """Load the stage of plan ``version`` before any of its frames come
        (:meth:`runtime.versions.PlanVersions.prepare` says how)."""
        self._start()
        return await self.plans.prepare(version, stage_box, expected, codec_up, emulated_compute_s, keep, same_as, batchable)

    async def _fetch(self, version: int) -> None:
        await self.plans.fetch(version)

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
            apply = self._apply.get(what)
            if apply is not None:  # bandwidth to the link model, speed to the compute clock
                apply(value)
            log.info("%s: %s is now %s (emulated condition at %.1f s)", self.cfg.where, what, value, at_s)

    async def ack(self, watermarks: dict) -> None:
        """The driver's delivered watermarks (:mod:`runtime.node.acks`)."""
        self.acks.from_driver(watermarks)

    async def replay_all(self) -> int:
        """Send every unacknowledged frame again now (the driver's safety net); how many."""
        return await self.outbox.replay_all()

    async def take(self, max_frames: int = 1024, timeout_s: float = 0.05, acked: dict | None = None) -> dict:
        """Sink only: results released in order per source, as ``(source, seq, output, latency_s)``.

        ``acked``: the driver's delivered watermarks, handed down to the senders in push replies."""
        self._start()
        if acked:
            self.acks.from_driver(acked)
        return {"incarnation": self.incarnation, **await self.outbox.take(max_frames, timeout_s)}

    async def advance(self, watermarks: dict) -> None:
        """Sink only: after a restart, skip what the driver already has."""
        self.outbox.advance(watermarks)

    async def counters(self) -> dict:
        """What live adaptation reads once a second: cumulative counters and conditions only (cheap:
        no percentiles; :meth:`metrics_json` adds those)."""
        out = {
            "node": self.cfg.node,
            "incarnation": self.incarnation,
            "tier_s_total": self.clock.tier_s_total,
            "tier_planned_s_total": self.clock.tier_planned_s_total,
            "conditions_now": dict(self.now),
            **self.outbox.totals(),  # a relay's link: bytes, busy time (and calls, on a real link)
        }
        emulated = self.now.get("battery_pct")  # set by emulated conditions only
        out["battery_pct"] = emulated if emulated is not None else host_battery_pct()
        return out

    async def metrics_json(self) -> dict:
        out = {**self.metrics.to_json(), **await self.counters()}
        out["batchable"] = self.versions[max(self.versions)].runner.batchable
        out["plan_versions"] = sorted(self.versions)
        out["frames_by_plan"] = dict(self.executor.frames_by_plan)
        out["queued"] = self.inbox.queue.qsize()  # frames waiting for the stage now
        out["cgroup"] = self.cgroup
        out.update(self.outbox.report())  # the sink's end-to-end figures, or a relay's unacknowledged frames
        return out

    async def shutdown(self) -> None:
        """Stop the background tasks, so the process can exit quietly."""
        for task in (self._worker, self._conditions):
            if task is not None:
                task.cancel()
        self.outbox.stop()

    async def pid(self) -> int:
        return os.getpid()

    async def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()
