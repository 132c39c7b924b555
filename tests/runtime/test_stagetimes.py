"""The report's stage and link times (no Ray): what each stage actor measured per frame, beside what the
analytic and the profiled cost models predict for its ops; and `lab shape`'s refusals, without root."""

from pathlib import Path

import pytest

from partition import CostModel, Topology, capture, partition
from partition.zoo import get_model
from runtime.errors import LabError
from runtime.lab.plan import plan_lab
from runtime.lab.shape import set_uplink_rate
from runtime.lab.state import LabState
from runtime.stagetimes import link_times, stage_times


def test_stage_times_divide_each_actors_compute_by_its_frames_and_sum_each_models_ops():
    topo = Topology.load("three_tier")
    graph = capture(*get_model("resnet18", [1, 3, 64, 64]), timing="analytic")
    plan = partition(graph, topo, "latency", pins={"stem": "device"})
    analytic = CostModel(graph, topo)
    # a profile that says every op takes 1 ms on every tier
    profiled = CostModel(graph, topo, {t.name: {n.name: 1e-3 for n in graph.nodes} for t in topo.path})
    report = {
        "nodes": [
            {"node": "device-0", "tier": "device", "frames": 10, "compute_s_total": 0.5},
            {"node": "gateway-0", "tier": "gateway", "frames": 10, "compute_s_total": 0.01},
            {"node": "edge-0", "tier": "edge", "frames": 0, "compute_s_total": 0.0},
        ],
        "links": [{"link": "device->gateway", "frames": 10, "transfer_ms_mean": 20.0, "predicted_ms": 25.0}],
    }
    rows = {r["node"]: r for r in stage_times(report, plan, analytic, profiled)}
    assert [len(s.nodes) for s in plan.stages] == [4, 0, 70]  # the input and the pinned stem; the gateway forwards
    device_ops = plan.stages[0].nodes
    assert rows["device-0"]["ops"] == len(device_ops)
    assert rows["device-0"]["measured_s"] == pytest.approx(0.05)  # 0.5 s over 10 frames
    assert rows["device-0"]["predicted_s"] == pytest.approx(sum(analytic.compute_s(op, 0) for op in device_ops))
    inputs = sum(op in graph.inputs for op in device_ops)  # the input's own time is zero in every model
    assert rows["device-0"]["profiled_s"] == pytest.approx(1e-3 * (len(device_ops) - inputs))
    assert rows["device-0"]["profiled_error"] == pytest.approx((rows["device-0"]["profiled_s"] - 0.05) / 0.05, abs=1e-6)
    # a stage that only forwards has no error to report; a stage that took no frame has no measurement
    assert rows["gateway-0"]["error"] is None and rows["gateway-0"]["measured_s"] == pytest.approx(0.001)
    assert rows["edge-0"]["measured_s"] is None and rows["edge-0"]["error"] is None
    assert stage_times(report, plan, analytic)[0]["profiled_s"] is None  # no profiles given
    plain = {"link": "device->gateway", "predicted_s": 0.025, "measured_s": 0.02, "error": 0.25}
    assert link_times(report) == [{**plain, "profiled_s": None, "profiled_error": None}]
    # a profiled link: 4 ms per call, and the ends' 100 ns per byte on top of the 50 Mbit/s wire (160 ns per byte)
    report["links"][0]["bytes_per_frame"] = 50_000
    links = {"device->gateway": {"call_s": 0.004, "cpu_s_per_byte": 1e-7}}
    row = link_times(report, CostModel(graph, topo, {"_links": links}))[0]
    assert row["profiled_s"] == pytest.approx(0.004 + 50_000 * (1.6e-7 + 1e-7))  # 17 ms
    assert row["profiled_error"] == pytest.approx((row["profiled_s"] - 0.02) / 0.02, abs=1e-6)


def test_lab_shape_names_what_it_cannot_shape_before_touching_anything(tmp_path):
    state = LabState(Path(tmp_path / "state.json"), plan_lab(Topology.load("three_tier"), machine_cores=2), 1, "/sys/fs/cgroup/cpu")
    with pytest.raises(LabError, match="no host or node 'camera-9'"):
        set_uplink_rate(state, "camera-9", 10)
    with pytest.raises(LabError, match="edge-0 is on the sink tier"):
        set_uplink_rate(state, "edge-0", 10)
    with pytest.raises(LabError, match="give a positive rate"):
        set_uplink_rate(state, "device-0", 0)
