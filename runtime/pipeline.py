"""``Pipeline``: a plan's stages as Ray actors across the tiers of a topology.

One stage actor per tier node (as the topology's fan-in says), or many nodes packed into a process in
emulation. Actors push frames straight to the next tier; the driver only hands inputs to the device nodes
and takes results from the sinks, acknowledging them so every sender can forget what was delivered.

The driver is made of parts with one job each (:mod:`runtime.driver`: admission, feeding, collection,
recovery, switching, the conditions' clock, observation), owned here and driven by one step loop,
:meth:`Pipeline.poll`; the actors are a :class:`runtime.deployment.Deployment`. Ray calls happen here
and in the deployment, at the edges; the parts are plain classes.
The README's Python example (run by tests/runtime/test_cli_lean.py) shows the whole API.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import torch

from partition.inputs import frame_problem
from partition.plan import Plan
from partition.topology import Topology

from .adapt import Adapter
from .delivery import Ledger, Result
from .deployment import Deployment, check_fit
from .driver import Admission, Collector, ConditionsClock, DriverView, Observer, PlanBook, Recovery, Switcher, SwitchHandle
from .errors import PipelineError, StageError
from .feeding import Feeder, ray_answered, ray_finished, ray_settle
from .packing import NodeHandle, pack_groups, tell_all
from .placement import NODE_LABEL, TIER_LABEL
from .raystart import quiet_ray
from .report import stage_brief
from .switch import PendingSwitch
from .wire import Frame, pack

__all__ = ["Pipeline", "Result", "quiet_ray", "NODE_LABEL", "TIER_LABEL"]

log = logging.getLogger(__name__)


class Pipeline:
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
            as many processes as they keep cores busy, at most one per core, and gives each node of a cluster its own
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
        check_fit(plan, topology)
        self.model, self.topology, self.address = model, topology, address
        self.emulate = topology.emulate if emulate is None else emulate
        conditions = list(topology.conditions if conditions is None else conditions)
        if address is not None and pack not in ("auto", "node"):
            raise PipelineError(f"pack={pack!r} with address={address!r}: on a cluster every node is its own machine; use pack='node'")
        self.stream_nodes = topology.source_nodes()  # source id -> device node
        groups = pack_groups(topology, pack, address, self.emulate, plan=plan)  # the nodes of each process; None: a process per node
        settings = dict(max_batch=max_batch, max_wait_s=max_wait_ms / 1e3, credits=credits, queue_frames=queue_frames, threads=threads)
        self.deployment = Deployment(plan, model, topology, address, self.emulate, conditions, groups, ready_timeout_s, **settings)
        self.tier_of = self.deployment.tier_of  # node -> its tier's index
        self.book = PlanBook(plan)
        self.ledger = Ledger()  # numbering, held frames, exactly-once delivery
        self.admission = Admission(topology.policy_of, window, queue_per_source)
        self.feeder = Feeder(credits, ray_finished, ray_settle)  # admitted frames on their way to the devices
        self.collector = Collector(self.ledger)
        self.recovery = Recovery(stall_s, self.deployment.hello, ray_finished, ray_answered)
        self.clock = ConditionsClock(self.emulate and bool(conditions))
        self.switcher = Switcher()
        if adapt is True:  # early exits the plan carries are chosen again with it
            adapt = Adapter.for_pipeline(plan, model, graph)
        self.observer = Observer(adapt if isinstance(adapt, Adapter) else None)
        self.view = DriverView(self)  # what the adapter and the reports read
        self._submitted = 0  # inputs checked so far (for error messages)

    # ------------------------------------------------------------------ what the parts hold
    plan = property(lambda self: self.book.plan, doc="The plan of every source without a route.")
    plans = property(lambda self: self.book.plans, doc="Plan versions by number.")
    version = property(lambda self: self.book.version, doc="The plan version new frames start on.")
    routes = property(lambda self: self.book.routes, doc="Sources whose new frames start on another version.")
    plan_label = property(lambda self: self.book.label, doc="``v2``, or ``v2 (v3 on 1 camera)``.")
    stages = property(lambda self: self.deployment.stages, doc="node -> actor handle.")
    hosts = property(lambda self: self.deployment.hosts, doc="The packed processes (NodeHost actors).")
    registry = property(lambda self: self.deployment.registry, doc="The plan registry actor.")
    adapter = property(lambda self: self.observer.adapter, doc="The live adapter, or None.")
    timeline = property(lambda self: self.observer.timeline, doc="Per-second figures, from the first poll on.")
    switching = property(lambda self: self.switcher.switching, doc="A plan switch is loading.")
    switch_done = property(lambda self: self.switcher.last.result if self.switcher.last else None, doc="The last switch's result.")
    switch_error = property(lambda self: self.switcher.last.error if self.switcher.last else None, doc="Why the last switch failed.")
    admitted = property(lambda self: self.view.admitted, doc="Frames numbered so far (each is delivered exactly once).")
    dropped = property(lambda self: self.view.dropped, doc="Frames ``drop-oldest`` sources dropped in :meth:`submit`.")

    # ------------------------------------------------------------------ life
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        """Start Ray (or join the cluster) and every actor; returns when all answer."""
        self.deployment.start()
        for node, handle in self.deployment.sources.items():
            host = handle.host if isinstance(handle, NodeHandle) else None
            self.feeder.connect(node, handle, host, group=host)

    def close(self) -> None:
        self.deployment.close()

    def kill(self, node: str, process: bool = False) -> None:
        """Kill ``node`` as a fault would, and let it come back (:meth:`runtime.deployment.Deployment.kill`)."""
        self.deployment.kill(node, process)

    # ------------------------------------------------------------------ frames in
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

    def _admit(self, source: int, item: tuple) -> int:
        """Number a frame (``item``: ``(born, inputs)``), hold it in the ledger and queue it for its device."""
        born, x = item
        if not self.ledger.held:
            self.recovery.progress()  # the stall clock starts with the first frame in flight
        seq = self.ledger.next_seq.get(source, 0)
        version = self.book.version_for(source)
        packed = pack(Frame(source, seq, [born], dict(zip(self.book.plans[version].stages[0].inputs, x)), version))
        node = self.stream_nodes[source]
        self.ledger.admit(source, node, packed)
        self.feeder.queue(node, packed)
        return seq

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
        deadline = time.perf_counter() + timeout_s
        while not self.admission.offer(source, (time.time(), inputs)):  # block: full until results come back
            self.collector.hold(self.poll(0.01))
            if time.perf_counter() > deadline:
                raise PipelineError(
                    f"source {source} could not hand over a frame for {timeout_s:.0f} s: per stage: {stage_brief(self.stages)}"
                )
        self._pump()

    # ------------------------------------------------------------------ the step loop
    def poll(self, timeout_s: float = 0.05) -> list[Result]:
        """One step of the driver: results that have arrived (waiting up to ``timeout_s`` for the first), in
        order per source, each once; then acknowledgements, the stall watch, a switch's progress, admission
        and feeding. It waits for the sinks up to ``timeout_s`` (a sink that does not answer within 5 s more is
        taken for gone and asked again after a backoff); with ``adapt``, a round of counters once a second
        waits up to 10 s for a restarting node."""
        self.observer.begin()
        out = self.collector.drain()
        buffered = len(out)
        due = self.feeder.next_due()  # frames held back to ride together must not wait for the sinks
        if due is not None:
            timeout_s = max(min(timeout_s, due - time.perf_counter()), 0.0)
        out += self._collect(timeout_s)
        if len(out) > buffered:
            self.recovery.progress()  # new results, not ones handed back from the buffer
        self.observer.observe(self.view, out[buffered:], self.book.version, self.deployment.counters)
        if self.recovery.ack_due():
            self.acknowledge()  # a safety net: acknowledgements normally ride on take and push replies
        if self.recovery.stalled(bool(self.ledger.held)):
            log.warning(
                "no result for %.1f s: devices get the undelivered inputs again once they answer, stages replay the unacknowledged",
                self.recovery.stall_s,
            )
            self.recovery.ask({node for node, _ in self.ledger.held.values()})
            tell_all(self.stages, "replay_all")
        self._pump()
        return out

    def _collect(self, timeout_s: float) -> list[Result]:
        """What the sinks have released (the deployment calls them; :class:`Collector` decides what is new)."""
        out: list[Result] = []
        for node, reply in self.deployment.take(timeout_s, self.ledger.watermarks()):
            results, restarted = self.collector.take(node, reply)
            if restarted:
                self.stages[node].advance.remote(self.ledger.watermarks())  # the restarted sink skips what we have
            out += results
        return out

    def _pump(self) -> None:
        """Announce the conditions' start, finish a switch, feed recovered devices again, admit and feed."""
        t0 = self.clock.tick()
        if t0 is not None:
            tell_all(self.stages, "start_clock", t0)
        self.switcher.step()
        back = self.recovery.back()
        if back:
            frames = self.ledger.refeed()
            for node in back:
                self.feeder.refeed(node, frames.get(node, []))  # re-sent in admission order
        self.admission.admit(self.ledger.in_flight, self._admit)
        self.feeder.pump()

    def acknowledge(self) -> None:
        """Tell every node what was delivered, so senders forget it (also rides on replies)."""
        tell_all(self.stages, "ack", self.ledger.watermarks())
        self.recovery.acked()

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
        return self.admission.waiting() + len(self.ledger.held) + len(self.collector.buffer)

    # ------------------------------------------------------------------ ways of running
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
        keys = [(src, self._admit(src, (born, tuple(x)))) for (src, _), x in zip(keys, inputs)]
        wanted, got = set(keys), {}
        start = time.perf_counter()
        self._pump()
        while len(got) < len(wanted):
            for r in self.poll():
                if (r.source, r.seq) in wanted:
                    got[(r.source, r.seq)] = r.output
                else:
                    self.collector.hold([r])  # a submitted frame's: poll hands it out later
            if time.perf_counter() - start > timeout_s:
                raise PipelineError(
                    f"{len(wanted) - len(got)} of {len(wanted)} frames missing after {timeout_s:.0f} s; "
                    f"per stage: {stage_brief(self.stages)}"
                )
        self.acknowledge()
        outs = [got[k] for k in keys]
        errors = [(i, o) for i, o in enumerate(outs) if isinstance(o, StageError)]
        if errors:
            raise StageError(f"{len(errors)} of {len(outs)} inputs failed; first, input {errors[0][0]}: {errors[0][1]}")
        return outs

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
        from .streaming import stream_live

        return stream_live(self, seconds, fps, inputs, on_update, drain_s)

    # ------------------------------------------------------------------ plans
    def switch(
        self,
        plan: Plan,
        emulated_compute_s: Sequence[float] | None = None,
        timeout_s: float = 60.0,
        wait: bool = True,
        sources: Sequence[int] | None = None,
    ) -> dict | SwitchHandle:
        """Run new frames on ``plan``, with no pause: while every actor loads the new stage, frames go on
        flowing on the old plan (this call keeps feeding and collecting them); frames in flight finish on
        the plan they started with; delivery stays exactly once and in order per source.

        If any actor cannot load its stage (or does not answer within ``timeout_s``), nothing changes and
        :class:`SwitchError` says which and why.

        Args:
            emulated_compute_s: per tier, the time emulation makes each stage take on the new plan
                (default: the plan's prediction).
            wait: False: start the switch and return its :class:`~runtime.driver.SwitchHandle` at once;
                it completes inside later calls (``submit``, ``poll``...): ``handle.done``, then
                ``handle.result`` or ``handle.error``, or ``handle.wait(pipe.poll)``.
            sources: only these sources' new frames move to ``plan`` (a plan for some nodes: a camera
                low on battery, see :meth:`route`); the others stay on theirs. Default: every source
                without a route of its own.

        Returns:
            ``{"version", "prepare_ms", "build_ms", "shipped_ms", "sources", "loads"}`` (with ``wait``).
        """
        if sources is not None:
            sources = [int(s) for s in sources]
            for source in sources:
                self._source(source)  # exists, or a PipelineError that says which do
        emulated = emulated_compute_s
        handle = self.switcher.begin(lambda: PendingSwitch(self.book, self.deployment, self.model, plan, emulated, timeout_s, sources))
        if not wait:
            return handle
        return handle.wait(lambda: self.collector.hold(self.poll(0.02)))

    def route(self, sources: Sequence[int], version: int | None = None) -> None:
        """New frames of ``sources`` start on plan ``version`` (None: on :attr:`version`, the plan of
        every source without a route); frames in flight finish on theirs. No loading: the version is
        one every actor has or fetches (:meth:`switch` with ``sources`` prepares a new one)."""
        sources = list(sources)
        for source in sources:
            self._source(source)
        self.book.route(sources, version)

    # ------------------------------------------------------------------ report
    def report(self) -> dict:
        """Per stage, per link and end-to-end figures, with the plan's predictions beside them."""
        from .report import build_report

        return build_report(self.view)
