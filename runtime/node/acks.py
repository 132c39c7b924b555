"""The acknowledgement rules of a node, in one place.

The driver delivers each source's results in order; its watermarks (source -> highest sequence number
delivered in order, ``-1``: none yet) are the only acknowledgements there are. They reach the nodes
without a call per frame:

- the sink: with every ``take`` (``take(acked=...)``);
- every node: the driver's occasional ``ack`` (a safety net);
- down the tree: every push reply carries the pushed-to node's watermarks to the node that pushed.

The rules:

1. A watermark only moves forward; keys may arrive as strings (through JSON or msgpack).
2. A relay keeps each frame it sent (to replay it after its parent restarts) until the frame's source's
   watermark reaches the frame's sequence number; then it forgets it, for good.
3. A relay counts only the sources it has carried: a city's watermarks name 1,000 sources, a camera's
   link carries one. A frame sent at or below its source's watermark was delivered already: not kept.
4. A node hands down in its push replies what it knows: a relay, the watermarks of the sources it
   carries; a sink, the driver's latest watermarks.

>>> marks = Marks()
>>> marks.carry((0, 0)), marks.carry((0, 1)), marks.learn({0: 0, 7: 3}), marks.covered([(0, 0), (0, 1)])
(True, True, True, [(0, 0)])
>>> marks.learn({"0": "-1"}), marks.carry((0, 0)), marks.marks      # never back; a delivered frame is not kept
(False, False, {0: 0})
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Marks", "NodeAcks", "normalise"]


def normalise(watermarks: dict) -> dict[int, int]:
    """``watermarks`` with int keys and values, however they travelled.

    >>> normalise({"3": "5"}), normalise({3: 5})
    ({3: 5}, {3: 5})
    """
    if watermarks and not isinstance(next(iter(watermarks)), int):
        return {int(k): int(v) for k, v in watermarks.items()}
    return watermarks


class Marks:
    """Per source this node carries, the highest sequence number the driver has delivered, as far as it knows."""

    def __init__(self) -> None:
        self.marks: dict[int, int] = {}

    def carry(self, key: tuple[int, int]) -> bool:
        """A frame ``(source, seq)`` sent now: whether it must be kept (not delivered yet). A source first
        seen is carried from now on (rule 3)."""
        mark = self.marks.get(key[0])
        if mark is None:
            self.marks[key[0]] = mark = -1
        return key[1] > mark

    def learn(self, watermarks: dict) -> bool:
        """Take in watermarks (the driver's, or a parent's push reply); whether any carried source moved."""
        watermarks = normalise(watermarks)
        moved = False
        for source, mark in self.marks.items():
            new = watermarks.get(source)
            if new is not None and new > mark:
                self.marks[source] = new
                moved = True
        return moved

    def covered(self, keys) -> list[tuple[int, int]]:
        """The frames among ``keys`` (``(source, seq)`` of carried sources) that were delivered: a relay
        may forget them (rule 2)."""
        marks = self.marks
        return [k for k in keys if k[1] <= marks[k[0]]]


class _Kept(Protocol):
    """What a relay keeps for replay (:class:`runtime.flow.ReplayBuffer`)."""

    watermarks: dict[int, int]

    def ack(self, watermarks: dict) -> int: ...


class NodeAcks:
    """What one node knows the driver delivered and what it hands down.

    Args:
        kept: a relay's replay buffer (acknowledgements let it forget frames); None at a sink.

    >>> from runtime.flow import ReplayBuffer
    >>> relay, sink = NodeAcks(ReplayBuffer()), NodeAcks(None)
    >>> relay.kept.add((4, 0), b"f0"), relay.kept.add((4, 1), b"f1")
    (None, None)
    >>> relay.from_driver({4: 0, 9: 2}); sink.from_driver({4: 0, 9: 2})
    >>> relay.reply(), len(relay.kept), sink.reply()     # a relay: its own sources; a sink: the driver's
    ({4: 0}, 1, {4: 0, 9: 2})
    """

    def __init__(self, kept: _Kept | None) -> None:
        self.kept = kept
        self.announced: dict[int, int] = {}  # the driver's latest watermarks (via take or ack)

    def from_driver(self, watermarks: dict) -> None:
        """The driver's watermarks (an ``ack`` call, or ``take(acked=...)`` at a sink)."""
        if not watermarks:
            return
        self.announced = watermarks  # handed down as they came: each relay normalises what it looks up
        if self.kept is not None:
            self.kept.ack(watermarks)  # looks up only the sources this node carries

    def reply(self) -> dict[int, int]:
        """What this node's push replies carry to the nodes that push to it (rule 4)."""
        return self.kept.watermarks if self.kept is not None else self.announced
