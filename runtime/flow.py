"""Flow control and delivery bookkeeping, as plain classes (no Ray): tests drive them directly.

- :class:`SourceQueue`: a bounded queue per source with a policy: ``block`` (the
  source waits) or ``drop-oldest`` (stale frames are dropped and counted).
- :class:`ReplayBuffer`: frames a stage has sent and the sink has not yet
  acknowledged, in send order, ready to be sent again after a restart.
- :class:`ReorderBuffer`: the sink's in-order, exactly-once delivery per source.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Generic, TypeVar

from .node.acks import Marks

__all__ = ["SourceQueue", "ReplayBuffer", "ReorderBuffer", "POLICIES"]

T = TypeVar("T")
POLICIES = ("block", "drop-oldest")


class SourceQueue(Generic[T]):
    """A bounded queue of frames waiting to enter the pipeline.

    >>> q = SourceQueue("drop-oldest", capacity=2)
    >>> [q.offer(i) for i in range(4)], list(q.items), q.dropped
    ([True, True, True, True], [2, 3], 2)
    >>> b = SourceQueue("block", capacity=1)
    >>> b.offer("a"), b.offer("b")
    (True, False)
    """

    def __init__(self, policy: str, capacity: int) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}; use one of {POLICIES}")
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.policy, self.capacity = policy, capacity
        self.items: deque[T] = deque()
        self.dropped = 0

    def offer(self, item: T) -> bool:
        """Queue ``item``. ``block``: False when full (wait and offer again); ``drop-oldest``: always True."""
        if len(self.items) >= self.capacity:
            if self.policy == "block":
                return False
            self.items.popleft()
            self.dropped += 1
        self.items.append(item)
        return True

    def pop(self) -> T | None:
        return self.items.popleft() if self.items else None

    def __len__(self) -> int:
        return len(self.items)


class ReplayBuffer:
    """Sent, unacknowledged frames by ``(source, seq)``, in send order.

    >>> r = ReplayBuffer()
    >>> for s in range(3): r.add((0, s), f"f{s}")
    >>> r.ack({0: 1}), list(r.pending())
    (2, ['f2'])
    """

    def __init__(self) -> None:
        self._frames: OrderedDict[tuple[int, int], object] = OrderedDict()
        self._marks = Marks()  # what the driver delivered, per source this link carries (runtime.node.acks)

    def add(self, key: tuple[int, int], frame: object) -> None:
        if self._marks.carry(key):  # a frame already delivered is not kept
            self._frames[key] = frame

    def ack(self, watermarks: dict[int, int]) -> int:
        """Forget frames with ``seq <= watermarks[source]``. Returns how many were dropped.

        Only the sources this link has carried are looked up: a city's watermarks name 1,000 sources,
        and a camera's link carries one of them."""
        if not self._marks.learn(watermarks):
            return 0
        done = self._marks.covered(self._frames)
        for k in done:
            del self._frames[k]
        return len(done)

    def pending(self, skip: set | frozenset = frozenset()) -> Iterable[object]:
        """Unacknowledged frames in send order, but those whose key is in ``skip`` (e.g. still on their way)."""
        return [f for k, f in self._frames.items() if k not in skip]

    @property
    def watermarks(self) -> dict[int, int]:
        """Per source this link carries, the highest sequence number acknowledged so far."""
        return dict(self._marks.marks)

    def __len__(self) -> int:
        return len(self._frames)

    def __contains__(self, key: tuple[int, int]) -> bool:
        return key in self._frames


class ReorderBuffer(Generic[T]):
    """Releases each source's results in sequence order, once each.

    >>> b = ReorderBuffer()
    >>> b.add(0, 1, "b"), b.add(0, 0, "a"), b.add(0, 0, "a again")
    (True, True, False)
    >>> b.ready(), b.duplicates
    ([(0, 0, 'a'), (0, 1, 'b')], 1)
    """

    def __init__(self) -> None:
        self.next_seq: dict[int, int] = {}
        self.pending: dict[int, dict[int, T]] = {}
        self.duplicates = 0

    def add(self, source: int, seq: int, value: T) -> bool:
        """Hold a result; False (and counted) when it is a duplicate."""
        waiting = self.pending.setdefault(source, {})
        if seq < self.next_seq.get(source, 0) or seq in waiting:
            self.duplicates += 1
            return False
        waiting[seq] = value
        return True

    def ready(self) -> list[tuple[int, int, T]]:
        out = []
        for source, waiting in self.pending.items():
            nxt = self.next_seq.get(source, 0)
            while nxt in waiting:
                out.append((source, nxt, waiting.pop(nxt)))
                nxt += 1
            self.next_seq[source] = nxt
        return out

    def watermarks(self) -> dict[int, int]:
        """Per source, the highest sequence number released so far (-1: none)."""
        return {s: n - 1 for s, n in self.next_seq.items()}

    def advance(self, watermarks: dict[int, int]) -> None:
        """Skip what was already delivered (after the sink restarted)."""
        for source, mark in watermarks.items():
            source, mark = int(source), int(mark)
            if mark + 1 > self.next_seq.get(source, 0):
                self.next_seq[source] = mark + 1
                waiting = self.pending.get(source, {})
                for seq in [s for s in waiting if s <= mark]:
                    del waiting[seq]
