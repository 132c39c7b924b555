"""The drift monitor and link meter that decide when to re-plan: plain classes, no Ray."""

from collections import deque

import pytest

from runtime.monitor import DriftMonitor, LinkMeter
from tests.runtime.test_uplink import Clock


def test_a_flapping_link_never_drifts_and_a_steady_drop_drifts_once_per_window():
    mon = DriftMonitor({"device->gateway Mbit/s": 20.0}, threshold=0.3, window_s=3.0)
    # flapping 20 <-> 2 every second for a minute: never off for a whole window
    for t in range(61):  # ends on 20 at t = 60
        assert mon.observe(float(t), {"device->gateway Mbit/s": 2.0 if t % 2 else 20.0}) == []
    # a steady drop: reported after 3 s, not before
    reports = [mon.observe(61.0 + t * 0.5, {"device->gateway Mbit/s": 2.0}) for t in range(8)]
    assert [bool(r) for r in reports] == [False] * 6 + [True] * 2
    mon.rebase({"device->gateway Mbit/s": 2.0})  # the new plan expects 2 Mbit/s
    assert mon.observe(71.0, {"device->gateway Mbit/s": 2.2}) == []


def test_link_meter_window():
    m = LinkMeter(window_s=1.0)
    for i in range(10):
        m.add(i * 0.1, 125_000, 0.05)  # 1 Mbit in 50 ms: 20 Mbit/s
    assert m.mbps(0.9) == pytest.approx(20.0)
    m.add(2.5, 12_500, 0.05)  # the old samples left the window: 2 Mbit/s
    assert m.mbps(2.5) == pytest.approx(2.0)


def test_a_low_battery_moves_only_that_cameras_frames_to_an_energy_plan_and_back():
    """The adapter's battery rule with a stand-in pipeline (no Ray): a device below 20% gets an
    energy-first plan for its own cameras (one switch, with ``sources``); the others stay on the
    throughput plan; a second low device joins the loaded energy plan without another switch; each
    returns to the pipeline's plan once above 30% (hysteresis: not at 25%)."""
    import dataclasses

    import torch

    from partition import capture, partition
    from runtime.adapt import Adapter
    from runtime.driver import SwitchHandle
    from tests.partition.helpers import topology
    from tests.partition.test_replan import Funnel

    torch.manual_seed(0)
    graph = capture(Funnel().eval(), (torch.randn(16, 64),), timing="analytic")
    graph.nodes = [dataclasses.replace(n, host_time_s=1e-3 if n.op == "compute" else 0.0) for n in graph.nodes]
    base = topology(speeds=(1.0, 0.5, 4.0), nodes=(2, 2, 1), bandwidth_mbps=(20, 50))
    topo = base.model_copy(update={"links": [base.links[0].model_copy(update={"tx_energy_nj_per_byte": 10_000.0}), base.links[1]]})

    class Pipe:
        def __init__(self):
            self.topology, self.plan = topo, partition(graph, topo, "throughput")
            self.model = None  # what the pipeline runs: a bare model here (no exit heads)
            self.tier_of = {"device-0": 0, "device-1": 0, "gateway-0": 1, "gateway-1": 1, "edge-0": 2}
            self.stream_nodes = ["device-0", "device-1"]
            self.version, self.plans, self.routes = 0, {0: self.plan}, {}
            self.emulate, self.switching, self.switched = False, False, []

        def switch(self, plan, emulated_compute_s=None, wait=True, sources=None):
            self.switched.append((plan, sources))
            version = max(self.plans) + 1
            self.plans[version] = plan
            if sources is None:
                self.plan, self.version = plan, version
            else:
                self.route(sources, version)
            handle = SwitchHandle(version)  # done at once: the adapter reads its result next round
            handle.result = {"version": version, "sources": sources}
            return handle

        def route(self, sources, version=None):
            for s in sources:
                if version is None or version == self.version:
                    self.routes.pop(s, None)
                else:
                    self.routes[s] = version

    pipe = Pipe()
    adapter = Adapter(graph, "throughput", hold_s=10.0, background=False)
    adapter.attach(pipe, start_s=0.0)
    throughput_energy = pipe.plan.predicted.energy_j

    def step(at_s: float, levels: dict) -> None:
        metrics = [
            {"node": n, "battery_pct": levels.get(n), "incarnation": "i", "tier_s_total": at_s, "tier_planned_s_total": at_s}
            for n in pipe.tier_of
        ]  # computing as planned
        adapter.start_s = -at_s + __import__("time").perf_counter()  # the adapter's clock reads at_s
        adapter.step(pipe, metrics)

    full = {"device-0": 80.0, "device-1": 90.0}
    step(1.0, full)
    assert pipe.switched == []
    step(2.0, {**full, "device-0": 15.0})  # one camera runs low
    assert [sources for _, sources in pipe.switched] == [[0]]  # only its frames move
    energy_plan = pipe.switched[0][0]
    assert pipe.routes == {0: 1} and pipe.version == 0 and pipe.plan is pipe.plans[0]
    assert energy_plan.predicted.energy_j < throughput_energy / 1.2
    assert "device-0 battery 15%" in adapter.switches[-1].reason and adapter.switches[-1].nodes == ("device-0",)
    for t in range(3, 20):
        step(float(t), {**full, "device-0": 12.0})  # stays low: no more switches
    assert len(pipe.switched) == 1
    step(20.0, {**full, "device-0": 12.0, "device-1": 10.0})  # a second camera: joins v1, nothing to load
    assert len(pipe.switched) == 1 and pipe.routes == {0: 1, 1: 1}
    assert adapter.switches[-1].nodes == ("device-1",) and adapter.switches[-1].version == 1
    step(40.0, {**full, "device-0": 25.0, "device-1": 10.0})  # between 20% and 30%: hysteresis
    assert pipe.routes == {0: 1, 1: 1}
    step(41.0, {**full, "device-0": 35.0, "device-1": 10.0})  # charged again: back to the pipeline's plan
    assert pipe.routes == {1: 1} and len(pipe.switched) == 1
    assert adapter.switches[-1].nodes == ("device-0",) and "back to 35%" in adapter.switches[-1].reason
    assert adapter.switches[-1].predicted_fps_after > adapter.switches[-1].predicted_fps_before
    step(42.0, {**full, "device-0": 15.0, "device-1": 10.0})  # low again: back on the energy plan at once
    assert pipe.routes == {0: 1, 1: 1} and len(pipe.switched) == 1


def _real_link():
    """An adapter over a device whose real (unshaped) uplink is profiled at 10 ms per call and 150 ns per
    byte at its ends; ``second(wire_mbps, calls, nbytes)`` feeds it one second of that link's counters."""
    import dataclasses

    import torch

    from partition import capture, partition
    from runtime.adapt import Adapter
    from tests.partition.helpers import topology
    from tests.partition.test_replan import Funnel

    torch.manual_seed(0)
    graph = capture(Funnel().eval(), (torch.randn(16, 64),), timing="analytic")
    graph.nodes = [dataclasses.replace(n, host_time_s=1e-3 if n.op == "compute" else 0.0) for n in graph.nodes]
    topo = topology(speeds=(1.0, 0.5, 4.0), bandwidth_mbps=(50, 200))
    profiles = {"_links": {"device->gateway": {"call_s": 0.01, "cpu_s_per_byte": 1.5e-7}}}

    class Pipe:
        topology, plan, model = topo, partition(graph, topo, "throughput", profiles=profiles), None
        tier_of = {"device-0": 0, "gateway-0": 1, "edge-0": 2}
        emulate = switching = False

    adapter = Adapter(graph, "throughput", hold_s=0.0, background=False, profiles=profiles)
    adapter.attach(Pipe(), start_s=0.0)
    totals = {"node": "device-0", "incarnation": 1, "tier_s_total": 0.0, "tier_planned_s_total": 0.0}
    totals.update(wire_bytes_total=0, wire_busy_s_total=0.0, wire_calls_total=0)

    def second(wire_mbps: float, calls: int, nbytes: int = 200_000, call_s: float = 0.01) -> None:
        totals["wire_bytes_total"] += calls * nbytes
        totals["wire_calls_total"] += calls
        totals["wire_busy_s_total"] += calls * (call_s + nbytes * (8 / (wire_mbps * 1e6) + 1.5e-7))
        adapter.step(Pipe(), [dict(totals)])

    return adapter, second


def test_a_real_links_slow_sender_is_not_a_slow_wire_but_a_wire_drop_is(monkeypatch):
    """On a real (unshaped) link the busy time is the push's round trip. With the link's profile, a device
    carrying 25.8 Mbit/s over a 50 Mbit/s wire runs as planned: no drift, no re-plan. When the wire drops to
    2 Mbit/s, the drift is reported and the re-planner is given the wire's rate (2 Mbit/s), not what the link
    carried (1.93)."""
    adapter, second = _real_link()
    monkeypatch.setattr("runtime.adapt.time", clock := Clock())
    for _ in range(8):
        clock.tick()
        second(50.0, 10)
    assert adapter.replans == deque() and adapter.switches == []
    for _ in range(6):
        clock.tick()
        second(2.0, 1)
    first = adapter.replans[0]  # 4 s after the drop (the meter's window, then the drift window), for the wire's rate
    assert first["at_s"] == 13.0 and first["outcome"] == "proposed"
    assert first["for"] == "device->gateway 2 Mbit/s, gateway->edge 200 Mbit/s"


def test_small_frames_on_a_real_link_do_not_read_as_a_slow_wire(monkeypatch):
    """1 kB frames: a call's fixed time would be most of each round trip at the planned rate, so the bytes
    cannot tell the wire's rate: a call 2 ms slower than profiled would read as a 3.5 Mbit/s link on a
    50 Mbit/s wire. No measurement, no drift, no re-plan; until the round trips grow far past the call's time."""
    adapter, second = _real_link()
    monkeypatch.setattr("runtime.adapt.time", clock := Clock())
    for _ in range(8):
        clock.tick()
        second(50.0, 10, nbytes=1_000, call_s=0.012)
    assert adapter.replans == deque() and adapter.switches == []
    # a wire that drops 250x shows even through small frames: the round trips become far longer than the call
    for _ in range(6):
        clock.tick()
        second(0.2, 1, nbytes=20_000, call_s=0.012)
    assert adapter.replans and adapter.replans[0]["for"].startswith("device->gateway 0.2")
