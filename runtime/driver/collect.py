"""Collection: a part of the driver, without Ray. The sinks' ``take`` replies become results, each
delivered once and in order per source (:class:`runtime.delivery.Ledger`)."""

from __future__ import annotations

from ..delivery import Ledger, Result

__all__ = ["Collector"]


class Collector:
    """Turns sink replies into results; notices a sink that came back as a new incarnation.

    >>> from runtime.delivery import Ledger
    >>> led = Ledger(); led.admit(0, "d0", b"f0"); led.admit(0, "d0", b"f1")
    0
    1
    >>> c = Collector(led)
    >>> c.take("edge-0", {"incarnation": "a", "results": [(0, 1, "y1", 0.1), (0, 0, "y0", 0.2), (0, 0, "y0", 0.2)]})
    ([Result(source=0, seq=1, output='y1', latency_s=0.1), Result(source=0, seq=0, output='y0', latency_s=0.2)], False)
    >>> c.take("edge-0", {"incarnation": "b", "results": []})[1]   # restarted: it must skip what was delivered
    True
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.buffer: list[Result] = []  # results taken while waiting for something else (submit, switch, run)

    def take(self, node: str, reply: dict) -> tuple[list[Result], bool]:
        """``(new results, the sink restarted)`` from one sink's reply; duplicates are counted and dropped."""
        restarted = self.ledger.sink_restarted(node, reply["incarnation"])
        out = [Result(src, seq, value, latency) for src, seq, value, latency in reply["results"] if self.ledger.deliver(src, seq)]
        return out, restarted

    def hold(self, results: list[Result]) -> None:
        """Keep results for the next :meth:`drain` (they arrived while the caller waited for other things)."""
        self.buffer.extend(results)

    def drain(self) -> list[Result]:
        out, self.buffer = self.buffer, []
        return out
