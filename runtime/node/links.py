"""Link models of an :class:`runtime.uplink.Uplink`: what its link costs and what it counted.

The uplink tells its link model the same two things whatever the link is: a call leaves (``send``),
a call is back, answered or failed (``returned``).

- :class:`RealLink`: the network is real; nothing to hold or wait for. It counts the link busy while
  any call is out (overlapping calls once) and counts the calls, whose fixed time is the ends' work,
  not the wire's (the adapter tells them apart).
- :class:`ShapedLink`: an emulated link (:class:`runtime.emulation.LinkShaper`): each call is booked on
  the link's virtual wire; the receiver holds it until it arrives, and the sender waits while the wire
  is busy. Its busy time is the wire's.

Times are the uplink's ``time.perf_counter()`` readings, passed in.

>>> from runtime.emulation import LinkShaper
>>> shaped = ShapedLink(LinkShaper(bandwidth_mbps=8, latency_ms=10))
>>> shaped.send(1_000_000, 0.0)                  # (hold for, wire free at): 1 s on the wire + 10 ms
(1.01, 1.0)
>>> shaped.totals()
{'wire_bytes_total': 1000000, 'wire_busy_s_total': 1.0}
>>> real = RealLink()
>>> real.send(500, 0.0), real.send(500, 1.0)     # nothing to hold or wait for
((None, None), (None, None))
>>> real.returned(3.0, 500); real.returned(4.0, 500)
>>> real.totals()                                # busy from 0 to 4 s, once, though the calls add up to 6 s
{'wire_bytes_total': 1000, 'wire_busy_s_total': 4.0, 'wire_calls_total': 2}
"""

from __future__ import annotations

from ..emulation import LinkShaper

__all__ = ["RealLink", "ShapedLink", "link_model"]


class RealLink:
    """A real link: no shaping; busy while any call is out."""

    def __init__(self) -> None:
        self.calls_out = 0  # calls in flight
        self.busy_since = 0.0  # since when one has been
        self.wire_bytes_total = 0
        self.wire_busy_s_total = 0.0
        self.wire_calls_total = 0

    def send(self, nbytes: int, started: float) -> tuple[float | None, float | None]:
        """A call of ``nbytes`` leaves at ``started``: ``(hold for s, wire free at)``, None and None here."""
        if not self.calls_out:
            self.busy_since = started
        self.calls_out += 1
        return None, None

    def returned(self, now: float, nbytes: int | None) -> None:
        """A call is back at ``now``, having carried ``nbytes`` (None: it failed). The time any call was
        out counts once, as each returns; a call's round trip, the ends' work included, is the link's."""
        self.calls_out -= 1
        self.wire_busy_s_total += now - self.busy_since
        self.busy_since = now
        if nbytes is not None:
            self.wire_bytes_total += nbytes
            self.wire_calls_total += 1

    def set_bandwidth(self, bandwidth_mbps: float) -> None:
        """A real link's bandwidth is what it is: an emulated condition does not change it."""

    def totals(self) -> dict:
        """Cumulative counters for ``counters`` (:mod:`runtime.monitor`, :mod:`runtime.adapt`)."""
        return {
            "wire_bytes_total": self.wire_bytes_total,
            "wire_busy_s_total": self.wire_busy_s_total,
            "wire_calls_total": self.wire_calls_total,
        }


class ShapedLink:
    """An emulated link: calls are timed on ``shaper``'s virtual wire and never overtake each other."""

    def __init__(self, shaper: LinkShaper) -> None:
        self.shaper = shaper
        self.last_arrival = 0.0  # a link does not reorder
        self.wire_bytes_total = 0
        self.wire_busy_s_total = 0.0
        self.wire_calls_total = 0  # not counted: an emulated link's time is its wire's alone

    def send(self, nbytes: int, started: float) -> tuple[float | None, float | None]:
        """A call of ``nbytes`` handed to the link at ``started``: ``(seconds the receiver holds it, wire
        free again at)``; the sender waits until then (the link is busy serialising)."""
        free, arrive = self.shaper.schedule(nbytes, started)
        self.wire_bytes_total += nbytes
        self.wire_busy_s_total += max(free - max(started, free - nbytes / self.shaper.bytes_per_s), 0.0)
        arrive = max(arrive, self.last_arrival)
        self.last_arrival = arrive
        return arrive - started, free

    def returned(self, now: float, nbytes: int | None) -> None:
        """The wire's time and bytes were booked when the call was sent (:meth:`send`)."""

    def set_bandwidth(self, bandwidth_mbps: float) -> None:
        """A new bandwidth from now on (an emulated condition)."""
        self.shaper.set_bandwidth(bandwidth_mbps)

    def totals(self) -> dict:
        """Cumulative counters for ``counters`` (no call count: see :class:`RealLink`)."""
        return {"wire_bytes_total": self.wire_bytes_total, "wire_busy_s_total": self.wire_busy_s_total}


def link_model(shaper: LinkShaper | None) -> RealLink | ShapedLink:
    """The model of a link shaped by ``shaper``, or of a real one (None)."""
    return RealLink() if shaper is None else ShapedLink(shaper)
