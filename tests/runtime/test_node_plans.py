"""Plans for some nodes only: one camera's frames on another plan while the rest stay, live, on a real
local Ray; and the adapter doing it for a camera whose battery runs low."""

import dataclasses

import pytest
import torch

from partition import Topology, capture, partition
from partition.conditions import ConditionSpec
from runtime import Pipeline
from runtime.adapt import Adapter
from runtime.errors import PipelineError, SwitchError
from tests.partition.test_replan import Funnel
from tests.runtime.test_pipeline import fan_in_topology
from tests.runtime.test_switch import check_delivery, stream_through_switch, two_plans

pytestmark = pytest.mark.ray_local


def test_one_sources_frames_move_to_another_plan_and_back_the_rest_stay(ray_local):
    import ray

    topo = fan_in_topology(devices=2, gateways=1)
    model, plan, other = two_plans(topo)
    with Pipeline(plan, model, topo, max_batch=4) as pipe:
        with pytest.raises(PipelineError, match="source 7 does not exist"):
            pipe.switch(other, sources=[7])
        inputs, results, during = stream_through_switch(pipe, other, switch_sources=[0])
        assert pipe.switch_done["version"] == 1 and pipe.switch_done["sources"] == [0]
        assert pipe.version == 0 and pipe.plan is plan and pipe.routes == {0: 1}  # only source 0 moved
        assert pipe.plan_label == "v0 (v1 on 1 camera)"
        moved = {n: ray.get(pipe.stages[n].metrics_json.remote())["frames_by_plan"] for n in ("device-0", "device-1")}
        # back: source 0's new frames start on the pipeline's plan again, nothing to load
        pipe.route([0])
        assert pipe.routes == {} and pipe.plan_label == "v0"
        with pytest.raises(SwitchError, match="no plan version 9"):
            pipe.route([1], 9)
        torch.manual_seed(2)
        tail = [(torch.randn(1, 16),) for _ in range(20)]
        for i, x in enumerate(tail):
            pipe.submit(i % 2, *x)
        results += list(pipe.results(timeout_s=120))
        inputs += tail
        back = ray.get(pipe.stages["device-0"].metrics_json.remote())["frames_by_plan"]
        report = pipe.report()
    assert during > 0
    check_delivery(results, inputs, model, 2)  # every frame once, in order per source, equal to eager
    # source 0 (on device-0) ran on both plans, source 1 (device-1) only on the pipeline's
    assert set(moved["device-0"]) == {0, 1} and moved["device-0"][1] >= 15 and set(moved["device-1"]) == {0}
    assert back[0] == moved["device-0"][0] + 10 and back[1] == moved["device-0"][1]
    assert report["frames_delivered"] == len(inputs) and report["duplicates_dropped"] == 0


def frugal_topology(devices=2):
    """Cameras on an LTE-like radio (sending a byte costs more than computing), emulated."""
    topo = Topology.from_dict(
        {
            "name": "lte_cameras",
            "emulate": True,
            "tiers": [
                {"name": "device", "nodes": devices, "speed": 1.0},
                {"name": "gateway", "nodes": devices, "speed": 0.5},
                {"name": "edge", "speed": 4.0},
            ],
            "links": [
                {"from": "device", "to": "gateway", "bandwidth": "20 Mbit/s", "latency": "2 ms"},
                {"from": "gateway", "to": "edge", "bandwidth": "50 Mbit/s", "latency": "2 ms"},
            ],
            "sources": [{"count": devices, "fps": 20}],
        }
    )
    return topo.model_copy(update={"links": [topo.links[0].model_copy(update={"tx_energy_nj_per_byte": 10_000.0}), topo.links[1]]})


def test_a_camera_low_on_battery_moves_to_an_energy_plan_live_and_the_others_stay(ray_local):
    import ray

    torch.manual_seed(0)
    model = Funnel().eval()
    graph = capture(model, (torch.randn(16, 64),), timing="analytic")
    graph.nodes = [dataclasses.replace(n, host_time_s=1e-3 if n.op == "compute" else 0.0) for n in graph.nodes]
    topo = frugal_topology()
    plan = partition(graph, topo, "throughput")
    adapter = Adapter(graph, window_s=2.0, hold_s=30.0)
    low = [ConditionSpec(at="1 s", node="device-0", battery="15 %")]
    with Pipeline(plan, model, topo, conditions=low, adapt=adapter, graph=graph) as pipe:
        report = pipe.stream(8)
        frames = {n: ray.get(pipe.stages[n].metrics_json.remote())["frames_by_plan"] for n in ("device-0", "device-1")}
    switches = report["plan_switches"]
    assert len(switches) == 1, switches
    s = switches[0]
    assert s["nodes"] == ["device-0"] and s["version"] == 1 and s["error"] is None, s
    assert "device-0 battery 15%" in s["reason"]
    assert report["plan_version"] == 0 and report["plan_routes"] == {"0": 1}  # the other camera stayed
    assert pipe.plans[1].predicted.energy_j < plan.predicted.energy_j / 1.2  # the energy plan spends less
    assert frames["device-0"].get(1, 0) > 0 and set(frames["device-1"]) == {0}
    assert report["frames_delivered"] == report["sent_by_sources"] and report["drops"] == 0
    assert report["duplicates_dropped"] == 0
