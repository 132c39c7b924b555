"""Admission: a part of the driver, without Ray. Frames handed to ``submit`` wait in a small queue per
source, with the source's policy, until the source has fewer than ``window`` frames in flight."""

from __future__ import annotations

from collections.abc import Callable

from ..flow import SourceQueue

__all__ = ["Admission"]


class Admission:
    """The sources' waiting queues.

    Args:
        policy_of: ``policy_of(source)`` -> ``"block"`` or ``"drop-oldest"`` (the topology's).
        window: frames of one source in flight at once.
        per_source: frames waiting per source before its policy applies.

    >>> adm = Admission(lambda s: "drop-oldest", window=2, per_source=2)
    >>> [adm.offer(0, f"f{i}") for i in range(4)], adm.dropped
    ([True, True, True, True], 2)
    >>> admitted = []
    >>> adm.admit(in_flight=lambda s: len(admitted), admit=lambda s, item: admitted.append(item))
    >>> admitted, adm.waiting()
    (['f2', 'f3'], 0)
    """

    def __init__(self, policy_of: Callable[[int], str], window: int, per_source: int) -> None:
        self.policy_of = policy_of
        self.window, self.per_source = window, per_source
        self.queues: dict[int, SourceQueue] = {}
        self.queued: set[int] = set()  # the sources with frames waiting (a city has 1,000: never scan them all)

    def offer(self, source: int, item) -> bool:
        """Queue ``item`` for ``source``; False when a ``block`` source's queue is full (offer again later)."""
        queue = self.queues.get(source)
        if queue is None:
            queue = self.queues[source] = SourceQueue(self.policy_of(source), self.per_source)
        if not queue.offer(item):
            return False
        self.queued.add(source)
        return True

    def admit(self, in_flight: Callable[[int], int], admit: Callable[[int, object], None]) -> None:
        """Hand waiting frames to ``admit(source, item)`` while their source has room in its window."""
        for source in list(self.queued):
            queue = self.queues[source]
            while len(queue) and in_flight(source) < self.window:
                admit(source, queue.pop())
            if not len(queue):
                self.queued.discard(source)

    @property
    def dropped(self) -> int:
        """Frames ``drop-oldest`` sources dropped before they were numbered."""
        return sum(q.dropped for q in self.queues.values())

    def waiting(self) -> int:
        return sum(len(q) for q in self.queues.values())
