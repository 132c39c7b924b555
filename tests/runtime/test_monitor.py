"""The drift monitor and link meter that decide when to re-plan: plain classes, no Ray."""

import pytest

from runtime.monitor import DriftMonitor, LinkMeter


def test_a_flapping_link_never_drifts_and_a_steady_drop_drifts_once_per_window():
    mon = DriftMonitor({"device->gateway Mbit/s": 20.0}, threshold=0.3, window_s=3.0)
    # flapping 20 <-> 2 every second for a minute: never off for a whole window
    for t in range(61):                                               # ends on 20 at t = 60
        assert mon.observe(float(t), {"device->gateway Mbit/s": 2.0 if t % 2 else 20.0}) == []
    # a steady drop: reported after 3 s, not before
    reports = [mon.observe(61.0 + t * 0.5, {"device->gateway Mbit/s": 2.0}) for t in range(8)]
    assert [bool(r) for r in reports] == [False] * 6 + [True] * 2
    mon.rebase({"device->gateway Mbit/s": 2.0})                       # the new plan expects 2 Mbit/s
    assert mon.observe(71.0, {"device->gateway Mbit/s": 2.2}) == []


def test_link_meter_window():
    m = LinkMeter(window_s=1.0)
    for i in range(10):
        m.add(i * 0.1, 125_000, 0.05)                                 # 1 Mbit in 50 ms: 20 Mbit/s
    assert m.mbps(0.9) == pytest.approx(20.0)
    m.add(2.5, 12_500, 0.05)                                          # the old samples left the window: 2 Mbit/s
    assert m.mbps(2.5) == pytest.approx(2.0)
