"""Where a pipeline's nodes run: Ray started (or joined), one stage actor per tier node (or packed
processes of many nodes), placed by their labels, each given only its own stage module, the plan
registry, and the wait until every actor answers. A part of :class:`runtime.pipeline.Pipeline`.
"""

from __future__ import annotations

import logging
import time
import uuid

from partition.conditions import changes_for
from partition.errors import CaptureError
from partition.graph import TensorSpec
from partition.inputs import check_plan_frames, source_frames
from partition.plan import Plan, structure_digest
from partition.topology import Topology

from .actors import StageConfig, StageWorker
from .connect import connect_driver
from .errors import PipelineError, unavailable
from .packing import NodeHandle, NodeHost, ask_all, processes_of, tell_all
from .placement import actor_options, labelled_nodes
from .raystart import start_local_ray
from .registry import PlanRegistry

__all__ = ["Deployment", "check_fit"]

log = logging.getLogger("runtime.pipeline")

SINK_BACKOFF_S = 0.2  # a sink that cannot be reached is asked again after this
TAKE_GRACE_S = 5.0  # a sink's take answers within its timeout; beyond it by this much, the sink is taken for gone


def check_fit(plan: Plan, topology: Topology) -> None:
    """Raise :class:`PipelineError`, saying how to fix it, unless ``plan`` was made for ``topology``'s tiers,
    nodes and fan-in, and for the frames its sources declare."""
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


class Deployment:
    """The actors of a pipeline: :meth:`start`, :meth:`close`, :meth:`kill`.

    Args:
        plan, model, topology, address, emulate, conditions: as :class:`runtime.pipeline.Pipeline` has them.
        groups: the nodes of each packed process (:func:`runtime.packing.pack_groups`); None: a process per node.
        ready_timeout_s: how long :meth:`start` waits for every actor.
        settings: each stage's ``max_batch``, ``max_wait_s``, ``credits``, ``queue_frames``, ``threads``.
    """

    def __init__(
        self,
        plan: Plan,
        model,
        topology: Topology,
        address: str | None,
        emulate: bool,
        conditions: list,
        groups: list[list[str]] | None,
        ready_timeout_s: float = 120.0,
        **settings,
    ) -> None:
        self.plan, self.model, self.topology, self.address = plan, model, topology, address
        self.emulate, self.conditions, self.groups = emulate, conditions, groups
        self.settings = settings
        self.ready_timeout_s = ready_timeout_s
        self.tier_of = {node: i for i, tier in enumerate(topology.path) for node in tier.node_names()}
        self.stages: dict[str, object] = {}  # node -> actor handle (a NodeHandle where nodes share a process)
        self.sources: dict[str, object] = {}  # device node -> its stage actor, which hosts its cameras
        self.hosts: list = []  # the processes that host packed nodes (runtime.packing.NodeHost)
        self.registry = None  # plan versions for restarted actors (registry.py)
        self.module_refs: list = []  # stage modules in the object store, kept while frames may need them
        self.own_ray = False
        self.started = 0.0
        self.sink_down: dict[str, float] = {}  # sink -> when to ask it again after it could not be reached

    def keep(self, refs: list) -> None:
        """Keep objects in scope while frames of a plan version that needs them may exist (switch.py)."""
        self.module_refs.extend(refs)

    def sinks(self) -> dict:
        last = len(self.plan.tiers) - 1
        return {n: h for n, h in self.stages.items() if self.tier_of[n] == last}

    # ------------------------------------------------------------------ the driver's calls
    def take(self, timeout_s: float, acked: dict) -> list[tuple[str, dict]]:
        """``(sink, reply)`` of every sink's ``take`` (waiting up to ``timeout_s`` for results; ``acked``: the
        delivered watermarks). A sink that cannot be reached is left out and asked again after a backoff;
        when every sink is restarting this waits, but no longer than ``timeout_s``."""
        import ray

        now = time.perf_counter()
        sinks = {n: h for n, h in self.sinks().items() if self.sink_down.get(n, 0.0) <= now}
        if not sinks:
            time.sleep(max(min(timeout_s, min(self.sink_down.values()) - now), 0.0))
            return []
        refs = {node: h.take.remote(4096, timeout_s, acked) for node, h in sinks.items()}
        out = []
        for node, ref in refs.items():
            try:  # a sink answers within timeout_s; one that does not is wedged or gone
                out.append((node, ray.get(ref, timeout=timeout_s + TAKE_GRACE_S)))
            except (*unavailable(), ray.exceptions.GetTimeoutError) as exc:
                log.warning("sink %s unavailable (%s); waiting for its restart", node, type(exc).__name__)
                self.sink_down[node] = time.perf_counter() + SINK_BACKOFF_S
        return out

    def hello(self, node: str):
        """A call that completes when device ``node`` answers (after a restart)."""
        return self.sources[node].hello.remote()

    def counters(self) -> list | None:
        """Every node's counters (what the adapter measures), or None while a node is restarting."""
        import ray

        try:  # counters only: percentiles of 21 actors' samples every second would cost a core
            return list(ask_all(self.stages, "counters", timeout_s=10).values())
        except (*unavailable(), ray.exceptions.GetTimeoutError):
            return None  # measured next round (a restarted node's counters start again)

    def start(self) -> None:
        import ray

        if self.address is None:
            if not ray.is_initialized():
                start_local_ray(actors=len(self.tier_of), chatty=log.isEnabledFor(logging.INFO))
                self.own_ray = True
        else:
            connect_driver(self.address, self.topology)  # token, TLS; on a lab, from the head's namespace
        try:
            self._start_actors()
        except BaseException:
            self.close()  # a start that fails part-way leaves no actor behind (and no handle for a later GC)
            raise
        self.started = time.perf_counter()

    def _start_actors(self) -> None:
        import ray

        labelled = labelled_nodes() if self.address is not None else []
        stage_modules = self.plan.build_stages(self.model)
        worker = ray.remote(max_restarts=-1, max_task_retries=0)(StageWorker)
        self.registry = ray.remote(num_cpus=0)(PlanRegistry).remote()
        scales = self._tier_scales()
        last = len(self.plan.tiers) - 1
        configs, module_refs = {}, {}
        for t in reversed(range(last + 1)):
            tier = self.topology.path[t]
            module_refs[t] = ray.put(stage_modules[t])  # each instance of tier t gets stage t only
            self.module_refs.append(module_refs[t])  # kept in scope: a restarted actor needs it again
            for node in tier.node_names():
                link = self.topology.links[t] if t < last else None
                configs[node] = StageConfig(
                    tier=t,
                    tier_name=tier.name,
                    node=node,
                    expected=self.expected(t),
                    codec_up=self.plan.codecs[t] if t < last else "raw",
                    link={
                        "bandwidth_mbps": link.bandwidth_mbps,
                        "latency_ms": link.latency_ms,
                        "jitter_ms": link.jitter_ms,
                        "loss": link.loss,
                    }
                    if link
                    else None,
                    emulate=self.emulate,
                    scale=scales[t],
                    emulated_compute_s=self.plan.predicted.stage_compute_s[t],
                    **self.settings,
                    device=tier.accelerator,
                    last=t == last,
                    speed=tier.speed,
                    conditions=tuple(changes_for(self.conditions, self.topology, node)) if self.emulate else (),
                )
            if self.groups is None:  # a process per node, parents first
                for node in tier.node_names():
                    parent = self.stages[self.topology.parents[node]] if t < last else None
                    actor = worker.options(name=None, **self.placement(node, tier.name, labelled))
                    self.stages[node] = actor.remote(configs[node], module_refs[t], parent, self.registry)
        if self.groups is not None:
            self._start_hosts(configs, module_refs, labelled)
        for node in dict.fromkeys(self.topology.source_nodes()):
            self.sources[node] = self.stages[node]
        self._wait_ready()

    def _start_hosts(self, configs: dict, module_refs: dict, labelled: list[dict]) -> None:
        """Packed nodes: one :class:`NodeHost` per group, named so that hosts can find each other."""
        import ray

        host_actor = ray.remote(max_restarts=-1, max_task_retries=0, max_concurrency=100_000)(NodeHost)
        prefix = f"tierpipe-{uuid.uuid4().hex[:12]}"
        name_of = {node: f"{prefix}-{i}" for i, group in enumerate(self.groups) for node in group}
        parents = self.topology.parents
        for group in self.groups:
            tiers = sorted({configs[n].tier for n in group})
            hosted = [(configs[n], (parents[n], name_of[parents[n]]) if n in parents else None) for n in group]
            options = [self.placement(n, configs[n].tier_name, labelled) for n in group]
            gpus = max(o.get("num_gpus", 0.0) for o in options)
            opts = {**options[0], **({"num_gpus": gpus} if gpus else {})}
            host = host_actor.options(name=name_of[group[0]], **opts).remote(hosted, self.registry, tiers, *[module_refs[t] for t in tiers])
            self.hosts.append(host)
            for node in group:
                self.stages[node] = NodeHandle(host, node)

    def close(self) -> None:
        import ray

        try:
            ask_all(self.stages, "shutdown", timeout_s=5)
        except Exception:  # an actor already gone: nothing to stop
            pass
        for handle in processes_of(self.stages):
            try:
                ray.kill(handle, no_restart=True)
            except Exception:  # already gone
                pass
        self.stages.clear()
        self.sources.clear()
        self.hosts.clear()
        if self.registry is not None:
            try:
                ray.kill(self.registry)
            except Exception:  # already gone
                pass
            self.registry = None
        self.module_refs.clear()
        if self.own_ray and ray.is_initialized():
            ray.shutdown()
            self.own_ray = False

    def kill(self, node: str, process: bool = False) -> None:
        """Kill ``node`` as a fault would, and let it come back: with ``process``, the whole actor process
        it runs in (every node a packed process hosts, restarted by Ray); else only this node (a packed
        node loses its state and starts again as a new incarnation; an unpacked node is its process).
        Its senders replay what it lost, so nothing is lost or delivered twice."""
        import ray

        handle = self.stages[node]
        if isinstance(handle, NodeHandle) and not process:
            ray.get(handle.host.kill_node.remote(node))
        else:
            ray.kill(handle.host if isinstance(handle, NodeHandle) else handle, no_restart=False)

    # ------------------------------------------------------------------ placement
    def placement(self, node: str, tier: str, labelled: list[dict]) -> dict:
        return actor_options(self.topology, self.address, node, tier, labelled)

    def _wait_ready(self) -> None:
        import ray

        pending = {ref: ", ".join(nodes) for nodes, ref, _ in tell_all(self.stages, "hello")}
        pending[self.registry.get.remote(0, 0)] = "the plan registry"  # started now, not at the first switch
        ready, waiting = ray.wait(list(pending), num_returns=len(pending), timeout=self.ready_timeout_s)
        if waiting:
            names = sorted(pending[r] for r in waiting)
            raise PipelineError(
                f"actors for {names} did not start within {self.ready_timeout_s:.0f} s: their tier's nodes "
                "are missing, full, or cannot import tierpipe. Check `tierpipe cluster status`"
            )
        ray.get(ready)

    def _tier_scales(self) -> list[float]:
        if self.plan.tier_scale:
            return list(self.plan.tier_scale)
        return [1.0 / t.speed if t.speed else 1.0 for t in self.topology.path]

    def expected(self, t: int, plan: Plan | None = None) -> dict[str, TensorSpec | None]:
        plan = plan or self.plan
        spec = plan.stages[t]
        if t == 0:
            return dict(zip(spec.inputs, plan.inputs))
        return {c.name: (TensorSpec(c.shape, c.dtype, c.raw_bytes) if c.shape is not None else None) for c in plan.links[t - 1].tensors}
