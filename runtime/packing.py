"""Emulated nodes packed into few processes: one :class:`NodeHost` actor runs many nodes of a tier.

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

__all__ = ["NodeHandle", "NodeHost", "ask_all", "pack_groups", "processes_of", "resolve_pack", "tell_all"]

log = logging.getLogger(__name__)


def resolve_pack(pack: str | int, address: str | None, tiers: int = 3, cores: int | None = None) -> int | None:
    """Processes per tier for ``pack`` (None: one process per node).

    ``"auto"`` packs a local run (``address`` None) into as many processes as the machine has cores,
    shared out over the ``tiers`` (at least one per tier: 2 cores and 3 tiers give one process per tier),
    and gives each node its own process on a cluster, where each node is its own machine; ``"node"``
    always gives each node a process; ``"tier"`` one process per tier; an int caps the processes per tier.

    >>> resolve_pack("auto", None, tiers=3, cores=2), resolve_pack("auto", None, tiers=3, cores=16)
    (1, 5)
    >>> resolve_pack("auto", "auto"), resolve_pack("tier", "auto"), resolve_pack(3, None), resolve_pack("node", None)
    (None, 1, 3, None)

    Raises:
        PipelineError: an unknown value, saying which are known.
    """
    if pack == "node":
        return None
    if pack == "auto":
        return None if address is not None else max((cores or os.cpu_count() or 1) // max(tiers, 1), 1)
    if pack == "tier":
        return 1
    if isinstance(pack, int) and not isinstance(pack, bool) and pack >= 1:
        return pack
    raise PipelineError(f"pack={pack!r} is not known: use 'auto', 'node', 'tier' or a number of processes per tier (>= 1)")


def pack_groups(nodes: list[str], processes: int | None) -> list[list[str]]:
    """``nodes`` of one tier split into at most ``processes`` groups of consecutive nodes, as even as can be.

    >>> pack_groups(["d0", "d1", "d2", "d3", "d4"], 2)
    [['d0', 'd1', 'd2'], ['d3', 'd4']]
    >>> pack_groups(["d0", "d1"], None), pack_groups(["e0"], 4)
    ([['d0'], ['d1']], [['e0']])
    """
    if processes is None:
        return [[n] for n in nodes]
    per = math.ceil(len(nodes) / max(min(processes, len(nodes)), 1))
    return [nodes[i : i + per] for i in range(0, len(nodes), per)]


class _Method:
    __slots__ = ("host", "node", "name")

    def __init__(self, host, node: str, name: str) -> None:
        self.host, self.node, self.name = host, node, name

    def remote(self, *args, **kwargs):
        return self.host.call.remote(self.node, self.name, *args, **kwargs)


class NodeHandle:
    """One node of a :class:`NodeHost`, used like the node's own actor handle (``h.push.remote(frames)``).

    Picklable: stages hold their parent's handle to push to it.
    """

    def __init__(self, host, node: str) -> None:
        self.host = host
        self.node = node

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("_") or name in ("host", "node"):
            raise AttributeError(name)
        return _Method(self.host, self.node, name)

    def __repr__(self) -> str:
        return f"NodeHandle({self.node})"


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
    """Many nodes of one tier in one process (wrapped with ``ray.remote`` by the pipeline).

    Args:
        stage: the tier's stage module, shared by the nodes (frames run one at a time in a process).
        nodes: ``(StageConfig, parent handle)`` of each node it hosts.
        registry: the pipeline's plan registry (restarted nodes fetch plan versions from it).
    """

    def __init__(self, stage, nodes: list, registry=None) -> None:
        from .actors import StageWorker

        self._make = StageWorker
        self.stage = stage
        self.registry = registry
        self.specs = {cfg.node: (cfg, parent) for cfg, parent in nodes}
        self.workers = {node: StageWorker(cfg, stage, parent, registry, freeze=False) for node, (cfg, parent) in self.specs.items()}
        self.calls: dict[str, set[asyncio.Task]] = {node: set() for node in self.specs}
        self.kills: dict[str, int] = dict.fromkeys(self.specs, 0)
        from .versions import freeze_heap

        freeze_heap()  # once for the process, not once per node

    async def call(self, node: str, method: str, *args, **kwargs):
        """Run ``method`` of ``node``'s worker. A call cut short by :meth:`kill_node` raises
        :class:`NodeGoneError`, which senders treat as a dead actor (they replay once it answers again)."""
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
        cfg, parent = self.specs[node]
        self.workers[node] = self._make(cfg, self.stage, parent, self.registry, freeze=False)
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

    async def feed_many(self, chunks: dict) -> dict:
        """Feed several device nodes in one call: node -> its feed reply, or the error that cut it short
        (that node's frames are fed again by the driver's stall watch; the others are not held up)."""
        replies = await asyncio.gather(*(self.call(n, "feed", frames) for n, frames in chunks.items()), return_exceptions=True)
        return {n: (f"{type(r).__name__}: {r}" if isinstance(r, BaseException) else r) for n, r in zip(chunks, replies)}

    async def nodes(self) -> list[str]:
        return sorted(self.workers)

    async def pid(self) -> int:
        return os.getpid()
