"""``Pipeline``: a plan's stages as Ray actors across the tiers of a topology.

One stage actor per tier node (as the topology's fan-in says) and one source
actor per device node with input streams. Actors push frames straight to the
next tier; the driver only hands inputs to the sources and takes results from
the sink, acknowledging them so every sender can forget what was delivered.
The README's Python example (run by tests/runtime/test_cli_lean.py) shows the whole API.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import torch

from partition.errors import CaptureError
from partition.inputs import check_plan_frames, frame_problem, source_frames
from partition.plan import Plan, structure_digest
from partition.topology import Topology

from .adapt import Adapter
from .delivery import Ledger, Result
from .errors import PipelineError, StageError, unavailable
from .feeding import Feeder, ray_finished, ray_settle
from .flow import SourceQueue
from .lifecycle import Lifecycle
from .live import LiveChanges
from .packing import pack_groups, tell_all
from .placement import NODE_LABEL, TIER_LABEL
from .raystart import quiet_ray
from .report import stage_brief
from .timeline import TimelineRecorder
from .wire import Frame, pack

__all__ = ["Pipeline", "Result", "quiet_ray", "NODE_LABEL", "TIER_LABEL"]

log = logging.getLogger(__name__)

POLL_EVERY_S = 0.025  # a stream asks the sinks for results at most this often


class Pipeline(Lifecycle, LiveChanges):
    """Run ``plan`` over ``topology``: a context manager.

    Args:
        plan: from :func:`partition.partition` (or ``Plan.load``).
        model: the unmodified model; each actor gets only its own stage of it.
        topology: tiers, nodes, fan-in, sources; ``emulate`` comes from it unless given.
        address: ``None`` starts a local Ray of its own (everything on this machine; a Ray this
            process already initialised is used as it is);
            otherwise an existing cluster (``"auto"``, ``"ray://..."``, ``"host:6379"``)
            whose nodes carry ``tier`` / ``tier-node`` labels.
        max_batch, max_wait_ms: fan-in batching at each stage.
        credits: frames in flight per link (and feed calls in flight per device stage).
        window: frames of one source in flight at once through :meth:`submit`.
        queue_per_source: submitted frames waiting per source before its policy applies.
        conditions: emulated conditions over time (default: the topology's ``conditions:``).
        adapt: re-plan and switch live when measured links or speeds drift from the plan's
            (``True``: an :class:`runtime.adapt.Adapter` with its defaults; or one of your own),
            during :meth:`stream`; a plan made with early exits is re-planned with them.
        graph: the captured model the plan was made from (for ``adapt``; default: captured again).
        pack: processes for the nodes (:mod:`runtime.packing`): ``"auto"`` packs a local run's nodes into
            a process per core (emulated: at least 8 nodes each) and gives each node of a cluster its own
            process; ``"node"``, ``"tier"``, or a number of processes.
    """

    def __init__(
        self,
        plan: Plan,
        model: torch.nn.Module,
        topology: Topology,
        address: str | None = None,
        *,
        emulate: bool | None = None,
        max_batch: int = 8,
        max_wait_ms: float = 2.0,
        credits: int = 4,
        queue_frames: int = 64,
        threads: int = 1,
        stall_s: float = 3.0,
        ready_timeout_s: float = 120.0,
        window: int = 8,
        queue_per_source: int = 2,
        conditions: list | None = None,
        adapt: bool | Adapter = False,
        graph=None,
        pack: str | int = "auto",
    ) -> None:
        if list(plan.tiers) != [t.name for t in topology.path]:
            raise PipelineError(
                f"plan is for tiers {list(plan.tiers)} but topology {topology.name!r} has "
                f"{[t.name for t in topology.path]}; partition for this topology"
            )
        if plan.topology_digest and plan.topology_digest != structure_digest(topology):
            raise PipelineError(
                f"plan was made for topology {plan.topology!r} with other nodes or fan-in than "
                f"{topology.name!r} has (structure {plan.topology_digest} vs "
                f"{structure_digest(topology)}); partition for this topology"
            )
        try:  # the frames the topology's sources declare are the frames the plan was made for
            check_plan_frames(plan, source_frames(topology))
        except CaptureError as exc:
            raise PipelineError(str(exc)) from None
        self.plan, self.model, self.topology, self.address = plan, model, topology, address
        self.emulate = topology.emulate if emulate is None else emulate
        self.conditions = list(topology.conditions if conditions is None else conditions)
        self._clock_t0: float | None = None  # the stream's start (wall clock): conditions count from it
        self._clock_sent = 0.0
        self.version = 0  # the plan new frames start on (switch())
        self.routes: dict[int, int] = {}  # source -> another plan for its new frames (route())
        self.plans: dict[int, Plan] = {0: plan}
        self.registry = None  # plan versions for restarted actors (registry.py)
        self._pending = None  # a switch in progress (switch.py)
        self.switch_done: dict | None = None
        self.switch_error: str | None = None
        self.adapter: Adapter | None = adapt if isinstance(adapt, Adapter) else None
        if adapt is True:  # early exits the plan carries are chosen again with it
            self.adapter = Adapter.for_pipeline(plan, model, graph)
        self.timeline: TimelineRecorder | None = None  # per-second figures, from the first poll on
        self._adapted_at = 0.0
        self.max_batch, self.max_wait_s, self.credits = max_batch, max_wait_ms / 1e3, credits
        self.queue_frames, self.threads, self.stall_s, self.ready_timeout_s = queue_frames, threads, stall_s, ready_timeout_s
        if address is not None and pack not in ("auto", "node"):
            raise PipelineError(f"pack={pack!r} with address={address!r}: on a cluster every node is its own machine; use pack='node'")
        self.groups = pack_groups(topology, pack, address, self.emulate)  # the nodes of each process; None: a process per node
        self.hosts: list = []  # the processes that host packed nodes (runtime.packing.NodeHost)
        self.stages: dict[str, object] = {}  # node -> actor handle (a NodeHandle where nodes share a process)
        self.sources: dict[str, object] = {}  # device node -> its stage actor, which hosts its cameras
        self.stream_nodes = topology.source_nodes()  # source id -> device node
        self.tier_of = {node: i for i, tier in enumerate(topology.path) for node in tier.node_names()}
        self._own_ray = False
        self._module_refs: list = []
        self.window, self.queue_per_source = window, queue_per_source
        self.ledger = Ledger()  # numbering, held frames, exactly-once delivery
        self._waiting: dict[int, SourceQueue] = {}  # submitted frames not yet admitted, per source
        self._queued: set[int] = set()  # the sources with frames in _waiting
        self.feeder = Feeder(credits, ray_finished, ray_settle)  # admitted frames on their way to the devices
        self._results_buffer: list[Result] = []
        self._submitted = 0
        self._started = 0.0
        self._wall_start = 0.0
        self._wall_s = 0.0
        self._last_ack = self._last_progress = time.perf_counter()

    # ------------------------------------------------------------------ running
    def _check_input(self, i: int, x: tuple) -> None:
        problem = frame_problem(self.plan.inputs, x)
        if problem:
            raise PipelineError(f"input {i}{problem}")

    def _source(self, source: int) -> str:
        if not isinstance(source, int) or not 0 <= source < len(self.stream_nodes):
            raise PipelineError(
                f"source {source!r} does not exist; the topology has {len(self.stream_nodes)} streams (0..{len(self.stream_nodes) - 1})"
            )
        return self.stream_nodes[source]

    def _admit(self, source: int, x: tuple, born: float) -> int:
        """Number a frame, hold it in the ledger and queue it for its device stage."""
        node = self.stream_nodes[source]
        if not self.ledger.held:
            self._last_progress = time.perf_counter()  # the stall clock starts with the first frame in flight
        seq = self.ledger.next_seq.get(source, 0)
        packed = pack(Frame(source, seq, [born], dict(zip(self.plan.stages[0].inputs, x)), self.routes.get(source, self.version)))
        self.ledger.admit(source, node, packed)
        self.feeder.queue(node, packed)
        return seq

    def _pump(self) -> None:
        """Admit waiting frames (within each source's window) and feed device stages (within their credits),
        several frames per call when several are queued."""
        self._tick_clock()
        self._check_switch()
        for source in list(self._queued):  # only the sources with frames waiting: a city has 1,000
            queue = self._waiting[source]
            while len(queue) and self.ledger.in_flight(source) < self.window:
                born, x = queue.pop()
                self._admit(source, x, born)
            if not len(queue):
                self._queued.discard(source)
        self.feeder.pump()

    def submit(self, source: int, *inputs: torch.Tensor, timeout_s: float = 60.0) -> None:
        """Hand one frame of ``source`` (e.g. a camera's latest image) to the pipeline; returns at once
        unless the source must wait.

        Frames wait in a small queue per source until the source has fewer than ``window`` frames in
        flight; the source's policy in the topology decides what happens when that queue is full:
        ``block`` waits for room (``PipelineError`` after ``timeout_s``), ``drop-oldest`` drops the
        stalest waiting frame (counted in ``dropped``, never numbered, so delivery stays gap-free).
        Results come back from :meth:`poll` / :meth:`results`, exactly once and in order per source.
        """
        self._source(source)
        self._check_input(self._submitted, inputs)
        self._submitted += 1
        queue = self._waiting.get(source)
        if queue is None:
            queue = self._waiting[source] = SourceQueue(self.topology.policy_of(source), self.queue_per_source)
        deadline = time.perf_counter() + timeout_s
        while not queue.offer((time.time(), inputs)):  # block: full until results come back
            arrived = self.poll(0.01)
            self._results_buffer.extend(arrived)
            if time.perf_counter() > deadline:
                raise PipelineError(
                    f"source {source} could not hand over a frame for {timeout_s:.0f} s: per stage: {stage_brief(self.stages)}"
                )
        self._queued.add(source)
        self._pump()

    @property
    def admitted(self) -> int:
        """Frames numbered and handed to the pipeline so far (each is delivered exactly once)."""
        return sum(self.ledger.next_seq.values())

    @property
    def dropped(self) -> int:
        """Frames that ``drop-oldest`` sources dropped in :meth:`submit`."""
        return sum(q.dropped for q in self._waiting.values())

    def poll(self, timeout_s: float = 0.05) -> list[Result]:
        """Results that have arrived (waiting up to ``timeout_s`` for the first), in order per source, each once."""
        import ray

        out, self._results_buffer = self._results_buffer, []
        buffered = len(out)
        if not self._wall_start:
            self._wall_start = time.perf_counter()
        due = self.feeder.next_due()  # frames held back to ride together must not wait for the sinks
        if due is not None:
            timeout_s = max(min(timeout_s, due - time.perf_counter()), 0.0)
        marks = self.ledger.watermarks()
        refs = {node: h.take.remote(4096, timeout_s, marks) for node, h in self._sinks().items()}
        for node, ref in refs.items():
            try:
                reply = ray.get(ref)
            except unavailable() as exc:
                log.warning("sink %s unavailable (%s); waiting for its restart", node, type(exc).__name__)
                time.sleep(0.2)
                continue
            if self.ledger.sink_restarted(node, reply["incarnation"]):
                self.stages[node].advance.remote(self.ledger.watermarks())  # the restarted sink skips what we have
            for src, seq, value, latency in reply["results"]:
                if self.ledger.deliver(src, seq):
                    out.append(Result(src, seq, value, latency))
        now = time.perf_counter()
        if len(out) > buffered:
            self._last_progress = now  # new results, not ones handed back from the buffer
        self._observe(out[buffered:], now)
        if now - self._last_ack > 2.0:
            self._ack()  # a safety net: acknowledgements normally ride on take and push replies
        if self.ledger.held and now - self._last_progress > self.stall_s:
            log.warning("no result for %.1f s: devices get the undelivered inputs again, stages replay the unacknowledged", self.stall_s)
            self._refeed()
            tell_all(self.stages, "replay_all")
            self._last_progress = time.perf_counter()
        self._pump()
        self._wall_s = time.perf_counter() - self._wall_start
        return out

    def results(self, timeout_s: float = 60.0):
        """Iterate over results as they arrive until every submitted frame is delivered (or ``timeout_s``
        passes without progress)."""
        last = time.perf_counter()
        while self.pending():
            got = self.poll()
            if got:
                last = time.perf_counter()
            elif time.perf_counter() - last > timeout_s:
                raise PipelineError(
                    f"{self.pending()} frames undelivered after {timeout_s:.0f} s without progress; per stage: {stage_brief(self.stages)}"
                )
            yield from got

    def pending(self) -> int:
        """Frames submitted and not yet delivered (waiting, in flight, or ready to be polled)."""
        return sum(len(q) for q in self._waiting.values()) + len(self.ledger.held) + len(self._results_buffer)

    def _ack(self) -> None:
        marks = self.ledger.watermarks()
        tell_all(self.stages, "ack", marks)
        self._last_ack = time.perf_counter()

    def _sinks(self) -> dict:
        return {n: h for n, h in self.stages.items() if self.tier_of[n] == len(self.plan.tiers) - 1}

    def run(self, inputs: Sequence, source: int | None = None, timeout_s: float = 300.0) -> list:
        """Run a finite list of input tuples through the pipeline; outputs in the same order.

        Inputs are spread over the topology's streams (or all given to ``source``),
        so fan-in and batching are exercised. Lossless: the sources wait for credits.

        Raises:
            StageError: a stage failed on some input (the message names it); other inputs still ran.
            PipelineError: bad inputs, or no progress within ``timeout_s``.
        """
        inputs = [x if isinstance(x, (tuple, list)) else (x,) for x in inputs]
        keys = []
        for i, x in enumerate(inputs):
            self._check_input(i, x)
            src = source if source is not None else i % len(self.stream_nodes)
            self._source(src)
            keys.append((src, -1))
        born = time.time()
        keys = [(src, self._admit(src, tuple(x), born)) for (src, _), x in zip(keys, inputs)]
        wanted, got = set(keys), {}
        start = time.perf_counter()
        self._pump()
        while len(got) < len(wanted):
            for r in self.poll():
                if (r.source, r.seq) in wanted:
                    got[(r.source, r.seq)] = r.output
                else:
                    self._results_buffer.append(r)  # a submitted frame's: poll hands it out later
            if time.perf_counter() - start > timeout_s:
                raise PipelineError(
                    f"{len(wanted) - len(got)} of {len(wanted)} frames missing after {timeout_s:.0f} s; "
                    f"per stage: {stage_brief(self.stages)}"
                )
        self._ack()
        outs = [got[k] for k in keys]
        errors = [(i, o) for i, o in enumerate(outs) if isinstance(o, StageError)]
        if errors:
            raise StageError(f"{len(errors)} of {len(outs)} inputs failed; first, input {errors[0][0]}: {errors[0][1]}")
        return outs

    def _refeed(self) -> None:
        """Inputs handed to a device stage that may have died with them, or whose feed failed: feed them again
        (a device that still holds one drops the repeat; the sink drops any that got through twice)."""
        import ray

        for node, frames in self.ledger.refeed().items():
            try:
                ray.get(self.sources[node].hello.remote(), timeout=30)  # wait for its restart
            except Exception as exc:
                log.warning("device stage %s not back yet (%s)", node, type(exc).__name__)
                continue
            self.feeder.refeed(node, frames)  # re-sent in admission order
        self._pump()

    def stream(
        self,
        seconds: float,
        fps: float | None = None,
        inputs: Sequence | None = None,
        on_update: Callable[[dict], None] | None = None,
        drain_s: float = 60.0,
    ) -> dict:
        """Live sources: every stream produces a frame every ``1 / fps`` s (the topology's rate by default;
        the streams in turn, spread over the interval) for ``seconds``, through :meth:`submit`, so a stream
        has its source's policy, exactly-once delivery and recovery from any actor's death (frames are held
        at the driver until delivered).

        ``drop-oldest`` streams drop stale frames before they are numbered (counted in the report);
        ``block`` streams wait. Returns the report; ``on_update(report)`` is called about twice a second
        (less often where a report takes long to gather: at most 5% of the time goes to it).
        Results are counted, not kept: memory stays flat however long it runs.

        Raises:
            PipelineError: frames still undelivered ``drain_s`` after the sources stopped.
        """
        fps = fps or (self.topology.sources[0].fps if self.topology.sources else 10.0)
        samples = [x if isinstance(x, (tuple, list)) else (x,) for x in (inputs or [self.plan.example_inputs()])]
        start = time.perf_counter()
        last_update, update_s, last_poll, k, n = 0.0, 0.0, 0.0, 0, len(self.stream_nodes)
        while time.perf_counter() - start < seconds:
            # the cameras take their frames in turn, spread over the interval: cameras are not in phase, and
            # all of them at once would queue a burst at every shared stage that no real camera sees
            src, tick = k % n, k // n
            self.submit(src, *samples[(tick + src) % len(samples)], timeout_s=drain_s)
            k += 1
            due = start + k / (fps * n)
            while True:
                self._results_buffer.clear()  # counted by the ledger; a stream keeps no outputs
                now = time.perf_counter()
                if on_update and now - last_update > max(0.5, 20 * update_s):  # a city's report costs more: less often
                    on_update(self.report())
                    last_update, update_s = time.perf_counter(), time.perf_counter() - now
                if now >= due:
                    break
                if now - last_poll < POLL_EVERY_S:  # results come in batches: a call per frame would cost a core
                    time.sleep(min(due, last_poll + POLL_EVERY_S) - now)
                    continue
                self.poll(min(due - now, 0.05))
                last_poll = time.perf_counter()
        for _ in self.results(timeout_s=drain_s):
            pass
        self._ack()
        report = self.report()
        report["offered"] = {"streams": n, "fps_per_stream": fps, "fps": fps * n, "seconds": seconds}
        return report

    # ------------------------------------------------------------------ report
    def report(self) -> dict:
        """Per stage, per link and end-to-end figures, with the plan's predictions beside them."""
        from .report import build_report

        return build_report(self)
