"""Feeding device nodes: a part of the driver, without Ray.

Admitted frames wait here per device node until the node has room: at most ``credits`` feed calls in
flight per node, up to ``chunk`` frames per call, and the frames of all the nodes one process hosts in
one call (a city's 1,000 cameras packed into two processes cost two calls, not 1,000).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

__all__ = ["Feeder"]

log = logging.getLogger("runtime.pipeline")


class Feeder:
    """Frames on their way to their device nodes.

    Args:
        credits: feed calls in flight per node.
        finished: ``finished(refs)`` -> the refs among them whose calls are done (``ray.wait`` at the edge).
        settle: ``settle(nodes, ref)`` for each finished call (e.g. log a failure: the driver's stall
            watch feeds the node's undelivered frames again).
        chunk: frames per node per call.

    >>> sent = []
    >>> class Host:  # a process hosting d0 and d1
    ...     class feed_many:
    ...         @staticmethod
    ...         def remote(chunks):
    ...             sent.append(chunks)
    ...             return len(sent)
    >>> f = Feeder(credits=1, finished=lambda refs: set(refs), settle=lambda nodes, ref: None)
    >>> f.connect("d0", None, Host, 0); f.connect("d1", None, Host, 0)
    >>> for i in range(3):
    ...     f.queue("d0" if i < 2 else "d1", f"frame{i}")
    >>> f.pump(); sent                           # one call for both nodes
    [{'d0': ['frame0', 'frame1'], 'd1': ['frame2']}]
    """

    def __init__(self, credits: int, finished: Callable[[list], set], settle: Callable[[list, object], None], chunk: int = 32) -> None:
        self.credits = credits
        self.finished = finished
        self.settle = settle
        self.chunk = chunk
        self.unsent: dict[str, deque] = {}  # admitted frames not yet fed, per device node
        self.calls: dict[str, list] = {}  # feed calls in flight, per device node
        self.handles: dict[str, object] = {}  # node -> its handle (feed, hello)
        self.groups: dict[object, tuple[object, list[str]]] = {}  # process -> (its host handle or None, its nodes)

    def connect(self, node: str, handle, host=None, group=None) -> None:
        """Feed ``node`` through ``handle.feed``, or, with ``host``, through ``host.feed_many`` together
        with the other nodes of ``group`` (the process they share)."""
        self.handles[node] = handle
        key = group if host is not None else ("node", node)
        self.groups.setdefault(key, (host, []))[1].append(node)
        self.unsent.setdefault(node, deque())
        self.calls.setdefault(node, [])

    def queue(self, node: str, packed) -> None:
        self.unsent[node].append(packed)

    def refeed(self, node: str, frames: list) -> None:
        """Replace what waits for ``node`` with ``frames`` (its undelivered ones, in admission order)."""
        self.unsent[node] = deque(frames)

    def pump(self) -> None:
        """Reap finished calls when a node with frames is out of credits, then send all that credits allow."""
        if any(self.unsent[n] and len(self.calls[n]) >= self.credits for n in self.unsent):
            refs = list(dict.fromkeys(r for calls in self.calls.values() for r in calls))
            done = self.finished(refs)
            for ref in refs:
                if ref in done:
                    self.settle([n for n, calls in self.calls.items() if ref in calls], ref)
            for calls in self.calls.values():
                calls[:] = [r for r in calls if r not in done]
        for host, nodes in self.groups.values():
            while True:
                ready = [n for n in nodes if self.unsent[n] and len(self.calls[n]) < self.credits]
                if not ready:
                    break
                chunks = {n: [self.unsent[n].popleft() for _ in range(min(len(self.unsent[n]), self.chunk))] for n in ready}
                ref = host.feed_many.remote(chunks) if host is not None else self.handles[ready[0]].feed.remote(chunks[ready[0]])
                for n in ready:
                    self.calls[n].append(ref)

    def waiting(self) -> int:
        return sum(len(q) for q in self.unsent.values())
