"""Feeding device nodes: a part of the driver, without Ray.

Admitted frames wait here per device node until the node has room: at most ``credits`` feed calls in
flight per node, up to ``chunk`` frames per call, and the frames of all the nodes one process hosts in
one call (a city's 1,000 cameras packed into two processes cost two calls, not 1,000). Calls to one
process go at most every ``linger_s``: the first frame after a quiet spell goes at once, and frames
that come faster ride together (1,000 frames/s to two processes cost 80 calls a second, not 1,000).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

__all__ = ["Feeder", "ray_answered", "ray_finished", "ray_settle"]

log = logging.getLogger("runtime.pipeline")


class Feeder:
    """Frames on their way to their device nodes.

    Args:
        credits: feed calls in flight per node.
        finished: ``finished(refs)`` -> the refs among them whose calls are done (``ray.wait`` at the edge).
        settle: ``settle(nodes, ref)`` for each finished call (e.g. log a failure: the driver's stall
            watch feeds the node's undelivered frames again).
        chunk: frames per node per call.
        linger_s: the least time between two calls to one process (unless a node has ``chunk`` frames).

    >>> sent = []
    >>> class Host:  # a process hosting d0 and d1
    ...     class feed_many:
    ...         @staticmethod
    ...         def remote(chunks):
    ...             sent.append(chunks)
    ...             return len(sent)
    >>> f = Feeder(credits=1, finished=lambda refs: set(refs), settle=lambda nodes, ref: None, linger_s=0)
    >>> f.connect("d0", None, Host, 0); f.connect("d1", None, Host, 0)
    >>> for i in range(3):
    ...     f.queue("d0" if i < 2 else "d1", f"frame{i}")
    >>> f.pump(); sent                           # one call for both nodes
    [{'d0': ['frame0', 'frame1'], 'd1': ['frame2']}]
    """

    def __init__(
        self,
        credits: int,
        finished: Callable[[list], set],
        settle: Callable[[list, object], None],
        chunk: int = 32,
        linger_s: float = 0.025,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.credits = credits
        self.finished = finished
        self.settle = settle
        self.chunk = chunk
        self.linger_s = linger_s
        self.clock = clock
        self.last: dict[object, float] = {}  # process -> when its last call went
        self.unsent: dict[str, deque] = {}  # admitted frames not yet fed, per device node
        self.calls: dict[str, list] = {}  # feed calls in flight, per device node
        self.handles: dict[str, object] = {}  # node -> its handle (feed, hello)
        self.groups: dict[object, tuple[object, list[str]]] = {}  # process -> (its host handle or None, its nodes)
        self.group_of: dict[str, object] = {}
        self.ref_nodes: dict = {}  # feed call in flight -> the nodes it feeds
        self.reaped_at = 0.0
        self.waiting_nodes: set[str] = set()  # nodes with frames waiting (a city has 1,000 nodes: never scan them all)

    def connect(self, node: str, handle, host=None, group=None) -> None:
        """Feed ``node`` through ``handle.feed``, or, with ``host``, through ``host.feed_many`` together
        with the other nodes of ``group`` (the process they share)."""
        self.handles[node] = handle
        key = group if host is not None else ("node", node)
        self.groups.setdefault(key, (host, []))[1].append(node)
        self.group_of[node] = key
        self.unsent.setdefault(node, deque())
        self.calls.setdefault(node, [])

    def queue(self, node: str, packed) -> None:
        self.unsent[node].append(packed)
        self.waiting_nodes.add(node)

    def refeed(self, node: str, frames: list) -> None:
        """Replace what waits for ``node`` with ``frames`` (its undelivered ones, in admission order)."""
        self.unsent[node] = deque(frames)
        if frames:
            self.waiting_nodes.add(node)

    def next_due(self) -> float | None:
        """When frames held back by ``linger_s`` are due to go (None: none are waiting)."""
        ready = {self.group_of[n] for n in self.waiting_nodes if len(self.calls[n]) < self.credits}  # out of credits: not due
        due = [self.last.get(key, 0.0) + self.linger_s for key in ready]
        return min(due) if due else None

    def pump(self, flush: bool = False) -> None:
        """Reap finished calls (every ``linger_s``, or at once when a node with frames is out of credits),
        then send all that credits and ``linger_s`` allow (``flush``: all that credits allow)."""
        now = self.clock()
        blocked = any(len(self.calls[n]) >= self.credits for n in self.waiting_nodes)
        if self.ref_nodes and (blocked or now - self.reaped_at >= self.linger_s):
            self.reaped_at = now
            for ref in self.finished(list(self.ref_nodes)):
                nodes = self.ref_nodes.pop(ref)
                for n in nodes:
                    self.calls[n].remove(ref)
                self.settle(nodes, ref)
        for key in {self.group_of[n] for n in self.waiting_nodes}:
            host, _ = self.groups[key]
            while True:
                ready = sorted(n for n in self.waiting_nodes if self.group_of[n] == key and len(self.calls[n]) < self.credits)
                if not ready:
                    break
                if not flush and now - self.last.get(key, float("-inf")) < self.linger_s:
                    if all(len(self.unsent[n]) < self.chunk for n in ready):
                        break  # too soon after the last call: these ride with the next
                self.last[key] = now
                chunks = {n: [self.unsent[n].popleft() for _ in range(min(len(self.unsent[n]), self.chunk))] for n in ready}
                ref = host.feed_many.remote(chunks) if host is not None else self.handles[ready[0]].feed.remote(chunks[ready[0]])
                self.ref_nodes[ref] = ready
                for n in ready:
                    self.calls[n].append(ref)
                    if not self.unsent[n]:
                        self.waiting_nodes.discard(n)

    def waiting(self) -> int:
        return sum(len(q) for q in self.unsent.values())


def ray_finished(refs: list) -> set:
    """The refs among ``refs`` whose calls are done (Ray's ``wait``, not waiting)."""
    import ray

    return set(ray.wait(refs, num_returns=len(refs), timeout=0)[0])


def ray_answered(ref) -> bool:
    """True when a finished call succeeded (Ray's ``get`` of a done call: it does not wait)."""
    import ray

    try:
        ray.get(ref, timeout=0)
        return True
    except Exception:  # the actor is still restarting, or failed: asked again at the next stall
        return False


def ray_settle(nodes: list[str], ref) -> None:
    """Log a feed call that failed, whole or for some of its nodes: the driver's stall watch feeds
    those nodes' undelivered frames again."""
    import ray

    from .errors import unavailable

    try:
        reply = ray.get(ref)
    except unavailable() as exc:
        log.warning("device stages %s unavailable (%s): their frames will be fed again", nodes, type(exc).__name__)
        return
    for node, outcome in reply.items() if isinstance(reply, dict) and "accepted" not in reply else ():
        if isinstance(outcome, str):  # one node of a packed process: killed while it took frames
            log.warning("device stage %s: %s; its frames will be fed again", node, outcome)
