"""Emulated nodes packed into few processes: one :class:`NodeHost` actor runs many nodes.

On a real cluster every node is its own machine, so every node gets its own actor process
(``pack="node"``). In a local run a process per node costs a Python process that imports torch
(about 2.5 CPU-s and 300 MB each): 21 nodes took 45 s to start on two cores, and a city of 1,000
cameras could not start at all. Packed, a host process holds many :class:`StageWorker` instances,
each still with its own compute clock, link shaper, replay buffer, metrics and incarnation; only the
process (and its stage module, shared by the tier's nodes) is shared.

The driver and the stages never see the difference: a :class:`NodeHandle` answers
``handle.method.remote(...)`` like a Ray actor handle, by calling ``host.call.remote(node, method, ...)``.

Fault model, per node as before: :meth:`NodeHost.kill_node` drops one node's state (queues, replay
buffer, held plan versions) and starts it again under a new incarnation, so its senders replay what it
had not passed on, exactly as after a process kill. Killing the host process kills all its nodes;
Ray restarts the process and every node recovers the same way.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os

from .errors import NodeGoneError, PipelineError
from .hostshare import CoalescedHandle, Courier, StagePool

__all__ = [
    "NODES_PER_PROCESS",
    "NODE_CPU_S_PER_FRAME",
    "load_cores",
    "NodeHandle",
    "NodeHost",
    "ask_all",
    "pack_groups",
    "processes_of",
    "tell_all",
]

log = logging.getLogger(__name__)


NODES_PER_PROCESS = 8  # pack="auto" without a plan: a local run's processes each host at least this many nodes
# pack="auto": the CPU a packed process spends on one frame besides its stages' own compute (decoding, queues,
# links, calls); measured on smart_city in one process (benchmarks/bench_runtime.py (f), 2026-11-30): 2.3 ms a
# frame at 240 frames/s, 3.2 ms at 160 (calls carry more frames at higher rates)
NODE_CPU_S_PER_FRAME = 0.0025


def load_cores(topology, plan) -> float:
    """The cores the nodes of an emulated run of ``plan`` keep busy at the rate the topology's sources offer:
    each frame costs ``NODE_CPU_S_PER_FRAME`` plus its stages' real compute on this host (a tier's predicted
    time, scaled back to this host). A process runs on one core at a time, so this is how many it takes."""
    scales = list(plan.tier_scale) or [1.0 / t.speed if t.speed else 1.0 for t in topology.path]
    host_s = sum(s / scale for s, scale in zip(plan.predicted.stage_compute_s, scales) if scale)
    streams = topology.source_nodes()
    fps = sum(s.fps * (s.count or len(s.nodes or topology.path[0].node_names())) for s in topology.sources) or 10.0 * len(streams)
    return fps * (NODE_CPU_S_PER_FRAME + host_s)


def pack_groups(
    topology, pack: str | int, address: str | None, emulate: bool = True, cores: int | None = None, plan=None
) -> list[list[str]] | None:
    """The nodes of ``topology`` grouped into processes for ``pack`` (None: a process per node).

    - ``"auto"``: on a cluster (``address`` given) a process per node, since each node is its own
      machine. In a local run, emulated: as many processes as the run keeps cores busy
      (:func:`load_cores` of ``plan``), at most one per core (the tiers' time is emulated, so a process
      is only a host, and every process more costs start-up and calls between processes: smart_city's
      21 nodes at 160 frames/s cost 4.3 CPU-ms a frame in one process, 5.8 in two); without a plan, one per
      ``NODES_PER_PROCESS`` nodes. Not emulated, up to one per node (real compute runs stages side by
      side, a core each).
    - ``"node"``: a process per node. ``"tier"``: one process per tier. An int: that many processes.

    Nodes are cut into processes in depth-first order from the sink, so a node mostly shares its process
    with its parent and its frames reach it without a Ray call.

    >>> from partition import Topology
    >>> tiers = [{"name": n, "nodes": k, "speed": 1} for n, k in (("d", 4), ("g", 2), ("e", 1))]
    >>> links = [{"from": "d", "to": "g", "bandwidth": "10 Mbit/s"}, {"from": "g", "to": "e", "bandwidth": "10 Mbit/s"}]
    >>> t = Topology.from_dict({"name": "t", "tiers": tiers, "links": links})
    >>> pack_groups(t, 2, None)
    [['e-0', 'g-0', 'd-0', 'd-1'], ['g-1', 'd-2', 'd-3']]
    >>> pack_groups(t, "tier", None), pack_groups(t, "auto", None, cores=16), pack_groups(t, "auto", "auto")
    ([['d-0', 'd-1', 'd-2', 'd-3'], ['g-0', 'g-1'], ['e-0']], [['e-0', 'g-0', 'd-0', 'd-1', 'g-1', 'd-2', 'd-3']], None)

    Raises:
        PipelineError: an unknown ``pack``, saying which are known.
    """
    if pack == "node" or (pack == "auto" and address is not None):
        return None
    if pack == "tier":
        return [list(tier.node_names()) for tier in topology.path]
    nodes = sum(t.nodes for t in topology.path)
    if pack == "auto":
        if not emulate:
            wanted = nodes
        elif plan is not None:
            wanted = math.ceil(load_cores(topology, plan))
        else:
            wanted = math.ceil(nodes / NODES_PER_PROCESS)
        processes = max(min(cores or os.cpu_count() or 1, wanted), 1)
    elif isinstance(pack, int) and not isinstance(pack, bool) and pack >= 1:
        processes = pack
    else:
        raise PipelineError(f"pack={pack!r} is not known: use 'auto', 'node', 'tier' or a number of processes (>= 1)")
    children: dict[str, list[str]] = {}
    for node, parent in topology.parents.items():
        children.setdefault(parent, []).append(node)
    order: list[str] = []
    stack = list(reversed(topology.path[-1].node_names()))
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(reversed(children.get(node, [])))
    per = math.ceil(len(order) / min(processes, len(order)))
    return [order[i : i + per] for i in range(0, len(order), per)]


class _Method:
    __slots__ = ("host", "node", "name")

    def __init__(self, host, node: str, name: str) -> None:
        self.host, self.node, self.name = host, node, name

    def remote(self, *args, **kwargs):
        return self.host.call.remote(self.node, self.name, *args, **kwargs)


class NodeHandle:
    """One node of a :class:`NodeHost`, used like the node's own actor handle (``h.push.remote(frames)``).

    Picklable: stages hold their parent's handle to push to it. Built from the host's Ray actor name
    (``host_name``), it finds the host when first used: hosts are created knowing only each other's
    names, since a child's host and its parent's may each hold the other's nodes.
    """

    def __init__(self, host, node: str, host_name: str | None = None) -> None:
        self._host = host
        self.node = node
        self.host_name = host_name

    @property
    def host(self):
        if self._host is None:
            import ray

            self._host = ray.get_actor(self.host_name)
        return self._host

    def __getstate__(self) -> dict:
        return {"_host": None if self.host_name else self._host, "node": self.node, "host_name": self.host_name}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("_") or name in ("host", "node", "host_name"):
            raise AttributeError(name)
        return _Method(self.host, self.node, name)

    def __repr__(self) -> str:
        return f"NodeHandle({self.node})"


class _LocalMethod:
    __slots__ = ("host", "node", "name")

    def __init__(self, host, node: str, name: str) -> None:
        self.host, self.node, self.name = host, node, name

    def remote(self, *args, **kwargs) -> asyncio.Future:
        """The call runs as a task of the host, shielded: a caller that gives up (a killed child) must not
        cut the parent's push short halfway, as a dead caller of a Ray actor would not either."""
        return asyncio.shield(self.host.spawn(self.host.call(self.node, self.name, *args, **kwargs)))


class LocalHandle:
    """A parent node hosted in the same process: its methods are called directly (no Ray call, no copy);
    the frames still cross the emulated link, encoded as on the wire."""

    def __init__(self, host: NodeHost, node: str) -> None:
        self.host, self.node = host, node

    def __getattr__(self, name: str) -> _LocalMethod:
        if name.startswith("_"):
            raise AttributeError(name)
        return _LocalMethod(self.host, self.node, name)


def processes_of(stages: dict) -> list:
    """The actor handles behind ``stages`` (node -> handle): each host once, each unpacked node's own."""
    out = {}
    for h in stages.values():
        out.setdefault(h.host if isinstance(h, NodeHandle) else h, None)
    return list(out)


def tell_all(stages: dict, method: str, *args, **kwargs) -> list[tuple[list[str], object, bool]]:
    """Start ``method(*args, **kwargs)`` on every node of ``stages`` (node -> handle), one Ray call per
    process: ``[(nodes, ref, per_node)]``; a ``per_node`` ref's result is a dict node -> result."""
    hosts: dict = {}
    calls = []
    for node, h in stages.items():
        if isinstance(h, NodeHandle):
            hosts.setdefault(h.host, []).append(node)
        else:
            calls.append(([node], getattr(h, method).remote(*args, **kwargs), False))
    calls += [(nodes, host.each.remote(nodes, method, *args, **kwargs), True) for host, nodes in hosts.items()]
    return calls


def ask_all(stages: dict, method: str, *args, timeout_s: float | None = None, **kwargs) -> dict:
    """:func:`tell_all`, waiting for the results: node -> result, in the order of ``stages``. Waits at
    most ``timeout_s`` (``ray.exceptions.GetTimeoutError``); a dead process raises as its actor's call would."""
    import ray

    calls = tell_all(stages, method, *args, **kwargs)
    replies = ray.get([ref for _, ref, _ in calls], timeout=timeout_s)
    out = {}
    for (nodes, _, per_node), reply in zip(calls, replies):
        out.update(reply if per_node else {nodes[0]: reply})
    return {node: out[node] for node in stages}


class NodeHost:
    """Many nodes in one process (wrapped with ``ray.remote`` and a unique actor name by the pipeline).

    Args:
        nodes: ``(StageConfig, parent)`` of each node it hosts; ``parent`` is ``(node, host name)``
            of the node it sends to, or None for a sink.
        registry: the pipeline's plan registry (restarted nodes fetch plan versions from it).
        tiers, *stages: the stage module of each tier it hosts nodes of, shared by those nodes (frames
            run one at a time in a process).
    """

    def __init__(self, nodes: list, registry, tiers: list[int], *stages) -> None:
        from .actors import StageWorker

        self._make = StageWorker
        self.stages = dict(zip(tiers, stages))
        self.registry = registry
        self.courier = Courier()
        self.batchable: dict[int, bool] = {}
        self.resolved = False  # the hosts of parents in other processes looked up (_resolve)
        self.tasks: set[asyncio.Task] = set()  # calls between nodes of this process (spawn)
        hosted = {cfg.node for cfg, _ in nodes}
        self.specs = {cfg.node: (cfg, self._parent(parent, hosted)) for cfg, parent in nodes}
        self.pool = StagePool()
        self.workers = {node: self._worker(node) for node in self.specs}
        self.calls: dict[str, set[asyncio.Task]] = {node: set() for node in self.specs}
        self.kills: dict[str, int] = dict.fromkeys(self.specs, 0)
        from .versions import freeze_heap

        freeze_heap()  # once for the process, not once per node

    def _parent(self, parent, hosted: set):
        if parent is None:
            return None
        node, host_name = parent
        if node in hosted:
            return LocalHandle(self, node)
        return CoalescedHandle(self.courier, NodeHandle(None, node, host_name))

    def spawn(self, coro) -> asyncio.Task:
        """Start ``coro`` as a task held until done (the event loop holds tasks only weakly)."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # a caller that left does not read it
        return task

    async def _resolve(self) -> None:
        """Look up the other processes this one sends to, off the event loop (a lookup blocks), once."""
        far = [p.handle for _, p in self.specs.values() if isinstance(p, CoalescedHandle)]
        await asyncio.to_thread(lambda: [h.host for h in far])
        self.resolved = True

    def _worker(self, node: str):
        cfg, parent = self.specs[node]
        worker = self._make(cfg, self.stages[cfg.tier], parent, self.registry, freeze=False, batchable=self.batchable.get(cfg.tier))
        self.batchable[cfg.tier] = worker.versions[0].runner.batchable  # one probe per tier, not one per node
        worker.pool = self.pool
        return worker

    async def call(self, node: str, method: str, *args, **kwargs):
        """Run ``method`` of ``node``'s worker. A call cut short by :meth:`kill_node` raises
        :class:`NodeGoneError`, which senders treat as a dead actor (they replay once it answers again)."""
        if not self.resolved:
            await self._resolve()
        worker = self.workers.get(node)
        if worker is None:
            raise PipelineError(f"this process hosts {sorted(self.workers)}, not {node!r}")
        inner = asyncio.ensure_future(getattr(worker, method)(*args, **kwargs))
        calls = self.calls[node]
        calls.add(inner)
        try:
            return await inner
        except asyncio.CancelledError:
            if inner.cancelled() and self.workers.get(node) is not worker:
                raise NodeGoneError(f"node {node} was killed while it ran {method}(); it is back as a new incarnation") from None
            raise
        finally:
            calls.discard(inner)

    async def kill_node(self, node: str) -> str:
        """Kill one emulated node: its queued and unacknowledged frames and loaded plan versions are lost,
        its calls in progress fail, and it starts again under a new incarnation. Returns that incarnation."""
        old = self.workers[node]
        cfg = self.specs[node][0]
        self.workers[node] = self._worker(node)
        await old.shutdown()
        for task in list(self.calls[node]):
            task.cancel()
        self.kills[node] += 1
        log.warning("%s killed (emulated node fault %d); back as %s", cfg.where, self.kills[node], self.workers[node].incarnation[:8])
        return self.workers[node].incarnation

    async def each(self, nodes: list[str], method: str, *args, **kwargs) -> dict:
        """``method`` of each of ``nodes``, run together: node -> result (the first failure raises)."""
        replies = await asyncio.gather(*(self.call(n, method, *args, **kwargs) for n in nodes))
        return dict(zip(nodes, replies))

    async def push_many(self, pushes: list) -> list:
        """``[(node, push args)]`` from another process's :class:`Courier`: each node's push reply, or the
        error that refused it (returned, not raised: one node's fault is not the others')."""
        return await asyncio.gather(*(self.call(node, "push", *args) for node, args in pushes), return_exceptions=True)

    async def feed_many(self, chunks: dict) -> dict:
        """Feed several device nodes in one call: node -> its feed reply, or the error that cut it short
        (that node's frames are fed again by the driver's stall watch; the others are not held up)."""
        replies = await asyncio.gather(*(self.call(n, "feed", frames) for n, frames in chunks.items()), return_exceptions=True)
        return {n: (f"{type(r).__name__}: {r}" if isinstance(r, BaseException) else r) for n, r in zip(chunks, replies)}

    async def nodes(self) -> list[str]:
        return sorted(self.workers)

    async def pid(self) -> int:
        return os.getpid()
