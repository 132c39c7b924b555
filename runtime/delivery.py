"""The driver's delivery bookkeeping, as a plain class (no Ray): tests drive it directly.

The driver numbers each source's frames, holds every frame it handed to a device stage
until its result is delivered (so it can feed it again if that stage dies with it),
delivers results exactly once and in order per source, and notices when a sink comes
back as a new incarnation (which must then skip what was already delivered).

>>> led = Ledger()
>>> [led.admit(0, "device-0", b"f0"), led.admit(0, "device-0", b"f1")]
[0, 1]
>>> led.deliver(0, 1), led.deliver(0, 0), led.deliver(0, 1), led.deliver(0, 0)
(True, True, False, False)
>>> led.duplicates, led.in_flight(0), led.refeed()
(2, 0, {})
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

__all__ = ["Ledger", "Result"]


class Result(NamedTuple):
    """One frame's output at the driver."""

    source: int
    seq: int
    output: object
    latency_s: float  # from the frame's birth to the sink


class Ledger:
    def __init__(self) -> None:
        self.next_seq: dict[int, int] = {}
        self.delivered: dict[int, int] = {}  # source -> highest seq delivered in order (-1: none)
        self.held: OrderedDict[tuple[int, int], tuple[str, object]] = OrderedDict()  # undelivered: (node, packed)
        self.early: dict[int, set[int]] = {}  # seqs seen ahead of the in-order watermark
        self.sink_incarnations: dict[str, str] = {}
        self.duplicates = 0
        self.total = 0

    def admit(self, source: int, node: str, packed: object) -> int:
        """Number a frame of ``source`` handed to device stage ``node``; held until delivered."""
        seq = self.next_seq.get(source, 0)
        self.next_seq[source] = seq + 1
        self.held[(source, seq)] = (node, packed)
        return seq

    def deliver(self, source: int, seq: int) -> bool:
        """A result arrived: True the first time, False for a duplicate (counted). Forgets the held frame."""
        mark = self.delivered.get(source, -1)
        early = self.early.setdefault(source, set())
        if seq <= mark or seq in early:
            self.duplicates += 1
            return False
        early.add(seq)
        while mark + 1 in early:
            mark += 1
            early.discard(mark)
        self.delivered[source] = mark
        self.held.pop((source, seq), None)
        self.total += 1
        return True

    def in_flight(self, source: int) -> int:
        """Frames of ``source`` admitted but not yet delivered."""
        return self.next_seq.get(source, 0) - 1 - self.delivered.get(source, -1) - len(self.early.get(source, ()))

    def sink_restarted(self, node: str, incarnation: str) -> bool:
        """Record the sink's incarnation; True when it changed (it must skip what was delivered)."""
        known = self.sink_incarnations.setdefault(node, incarnation)
        if known != incarnation:
            self.sink_incarnations[node] = incarnation
            return True
        return False

    def refeed(self, only: set | None = None) -> dict[str, list]:
        """Undelivered frames by device node, in admission order (to feed again after a stall)."""
        out: dict[str, list] = {}
        for key, (node, packed) in self.held.items():
            if only is None or key in only:
                out.setdefault(node, []).append(packed)
        return out

    def watermarks(self) -> dict[int, int]:
        return dict(self.delivered)
