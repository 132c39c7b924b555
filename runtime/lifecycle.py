"""Starting and stopping a pipeline's actors: a part of :class:`runtime.pipeline.Pipeline`.

Ray (local, or the cluster at ``address`` with its token), one stage actor per tier node placed
by its labels, each given only its own stage module, the plan registry, and the wait until every
actor answers. The state it uses is declared in ``Pipeline.__init__``.
"""

from __future__ import annotations

import logging
import time
import uuid

from partition.conditions import changes_for
from partition.graph import TensorSpec
from partition.plan import Plan

from .actors import StageConfig, StageWorker
from .connect import connect_driver
from .errors import PipelineError
from .packing import NodeHandle, NodeHost, ask_all, processes_of, tell_all
from .placement import actor_options, labelled_nodes
from .raystart import start_local_ray
from .registry import PlanRegistry

__all__ = ["Lifecycle"]

log = logging.getLogger("runtime.pipeline")


class Lifecycle:
    """``start`` / ``close`` and the context manager of a Pipeline."""

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        import ray

        if self.address is None:
            if not ray.is_initialized():
                start_local_ray(actors=len(self.tier_of), chatty=log.isEnabledFor(logging.INFO))
                self._own_ray = True
        else:
            connect_driver(self.address, self.topology)  # token, TLS; on a lab, from the head's namespace
        try:
            self._start_actors()
        except BaseException:
            self.close()  # a start that fails part-way leaves no actor behind (and no handle for a later GC)
            raise
        self._started = time.perf_counter()

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
            self._module_refs.append(module_refs[t])  # kept in scope: a restarted actor needs it again
            for node in tier.node_names():
                link = self.topology.links[t] if t < last else None
                configs[node] = StageConfig(
                    tier=t,
                    tier_name=tier.name,
                    node=node,
                    expected=self._expected(t),
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
                    max_batch=self.max_batch,
                    max_wait_s=self.max_wait_s,
                    credits=self.credits,
                    queue_frames=self.queue_frames,
                    threads=self.threads,
                    device=tier.accelerator,
                    last=t == last,
                    speed=tier.speed,
                    conditions=tuple(changes_for(self.conditions, self.topology, node)) if self.emulate else (),
                )
            if self.groups is None:  # a process per node, parents first
                for node in tier.node_names():
                    parent = self.stages[self.topology.parents[node]] if t < last else None
                    actor = worker.options(name=None, **self._placement(node, tier.name, labelled))
                    self.stages[node] = actor.remote(configs[node], module_refs[t], parent, self.registry)
        if self.groups is not None:
            self._start_hosts(configs, module_refs, labelled)
        for node in dict.fromkeys(self.stream_nodes):
            self.sources[node] = handle = self.stages[node]
            host = handle.host if isinstance(handle, NodeHandle) else None
            self.feeder.connect(node, handle, host, group=host)
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
            options = [self._placement(n, configs[n].tier_name, labelled) for n in group]
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
        self._module_refs.clear()
        if self._own_ray and ray.is_initialized():
            ray.shutdown()
            self._own_ray = False

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
    def _placement(self, node: str, tier: str, labelled: list[dict]) -> dict:
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

    def _expected(self, t: int, plan: Plan | None = None) -> dict[str, TensorSpec | None]:
        plan = plan or self.plan
        spec = plan.stages[t]
        if t == 0:
            return dict(zip(spec.inputs, plan.inputs))
        return {c.name: (TensorSpec(c.shape, c.dtype, c.raw_bytes) if c.shape is not None else None) for c in plan.links[t - 1].tensors}
