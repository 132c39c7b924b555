"""Measured figures against the running plan's: when they have drifted for long enough to act.

Plain classes (no Ray), fed by what the stages already record:

- :class:`LinkMeter`: a link's bandwidth from the bytes it carried and the time its sender
  spent on the wire, over a sliding window (seconds, not frames, so a slow link is judged
  on as much time as a fast one).
- :class:`DriftMonitor`: a figure is *off* when it differs from the plan's by more than
  ``threshold`` (relative, either way); drift is reported only when it has stayed off for the
  whole ``window_s``. A link that flaps faster than the window never reports, so it cannot
  make plans flap (the :class:`partition.replan.Replanner` adds a hold time after a switch).

Defaults: ``threshold=0.3`` (30%: well above the noise of the emulated links and of the
stages' compute on a shared machine), ``window_s=3.0`` (30 frame intervals at 10 fps).
"""

from __future__ import annotations

from collections import deque

__all__ = ["LinkMeter", "LinkEnds", "DriftMonitor"]


class LinkMeter:
    """Bandwidth of one link from ``(time, bytes, busy seconds)`` samples over the last ``window_s``.

    >>> m = LinkMeter(window_s=2.0)
    >>> m.add(0.0, 250_000, 0.1); m.add(0.5, 250_000, 0.1)
    >>> m.mbps(0.5)                          # 500 kB in 0.2 s on the wire
    20.0
    >>> m.mbps(10.0) is None                 # nothing in the window
    True
    """

    def __init__(self, window_s: float = 2.0) -> None:
        self.window_s = window_s
        self.samples: deque[tuple[float, int, float]] = deque()

    def add(self, now_s: float, nbytes: int, busy_s: float) -> None:
        self.samples.append((now_s, nbytes, busy_s))
        self._trim(now_s)

    def mbps(self, now_s: float) -> float | None:
        self._trim(now_s)
        busy = sum(s for _, _, s in self.samples)
        if not self.samples or busy <= 0:
            return None
        return round(sum(b for _, b, _ in self.samples) * 8 / busy / 1e6, 9)

    def _trim(self, now_s: float) -> None:
        while self.samples and self.samples[0][0] < now_s - self.window_s:
            self.samples.popleft()


class LinkEnds:
    """What a real link's ends add to its wire (profiled: ``CostModel.call_s``, ``cpu_s_per_byte``): a fixed
    time per call, and seconds per Mbit. Drift is judged on what a link carries, the re-planner gets the wire.

    >>> ends = LinkEnds(call_s=(0.01,), s_per_mbit=(0.15,))
    >>> round(ends.carried(0, 50.0), 3)                  # a 50 Mbit/s wire behind a slow sender
    5.882
    >>> round(ends.wire(0, 5.882, planned_mbps=50.0), 1), ends.wire(0, 9.0, planned_mbps=50.0)
    (50.0, 5000.0)
    """

    def __init__(self, call_s, s_per_mbit) -> None:
        self.call_s, self.s_per_mbit = tuple(call_s), tuple(s_per_mbit)

    @classmethod
    def of(cls, cost_model) -> LinkEnds:
        return cls(cost_model.call_s, cost_model.cpu_s_per_byte * 1e6 / 8)

    def carried(self, j: int, wire_mbps: float) -> float:
        """Mbit/s link ``j`` carries over a wire of ``wire_mbps``, its ends' work per byte included."""
        return 1.0 / (1.0 / wire_mbps + self.s_per_mbit[j])

    def wire(self, j: int, carried_mbps: float, planned_mbps: float) -> float:
        """The wire's Mbit/s behind a measured ``carried_mbps`` (the inverse of :meth:`carried`); a link carrying
        more than its ends' work per byte allows reads as a wire 100x its ``planned_mbps``."""
        left = 1.0 / carried_mbps - self.s_per_mbit[j]
        return 1.0 / left if left > 0.01 / planned_mbps else 100.0 * planned_mbps


class DriftMonitor:
    """Which measured figures have been off the plan's for a whole window.

    Args:
        expected: the plan's figures, ``{name: value}`` (e.g. ``{"device->gateway Mbit/s": 20.0}``).
        threshold: relative difference that counts as off (0.3: 30%).
        window_s: how long a figure must stay off before it is reported.

    >>> mon = DriftMonitor({"uplink": 20.0}, threshold=0.3, window_s=3.0)
    >>> mon.observe(0.0, {"uplink": 2.0}), mon.observe(2.0, {"uplink": 2.1}), mon.observe(3.0, {"uplink": 1.9})
    ([], [], ['uplink 1.9 vs 20 planned (-90%) for 3.0 s'])
    """

    def __init__(self, expected: dict[str, float], threshold: float = 0.3, window_s: float = 3.0) -> None:
        self.expected = dict(expected)
        self.threshold = threshold
        self.window_s = window_s
        self.off_since: dict[str, float] = {}

    def observe(self, now_s: float, measured: dict[str, float | None]) -> list[str]:
        """Reasons, one per figure that has stayed off for ``window_s`` (empty: keep the plan)."""
        reasons = []
        for name, value in measured.items():
            plan = self.expected.get(name)
            if value is None or not plan:
                continue
            change = value / plan - 1.0
            if abs(change) <= self.threshold:
                self.off_since.pop(name, None)
                continue
            since = self.off_since.setdefault(name, now_s)
            if now_s - since >= self.window_s:
                reasons.append(f"{name} {value:.3g} vs {plan:.3g} planned ({change:+.0%}) for {now_s - since:.1f} s")
        return reasons

    def rebase(self, expected: dict[str, float]) -> None:
        """A new plan runs: compare with its figures from now on."""
        self.expected = dict(expected)
        self.off_since.clear()
