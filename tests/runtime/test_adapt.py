"""Live adaptation end to end on a real local Ray: a Wi-Fi drop is measured, re-planned for and switched to."""

import pytest
import torch

from partition import Topology, capture, partition
from partition.conditions import ConditionSpec
from runtime import Pipeline
from runtime.adapt import Adapter
from runtime.timeline_plot import plot_timeline
from tests.models import CAMNET_PROFILES, CamNet

pytestmark = pytest.mark.ray_local


def cameras(n=2):
    return Topology.from_dict(
        {
            "name": "two_cameras",
            "emulate": True,
            "tiers": [{"name": "device", "nodes": n, "speed": 0.08}, {"name": "gateway", "speed": 0.8}, {"name": "edge", "speed": 6.0}],
            "links": [
                {"from": "device", "to": "gateway", "bandwidth": "20 Mbit/s", "latency": "4 ms"},
                {"from": "gateway", "to": "edge", "bandwidth": "1 Gbit/s", "latency": "1 ms"},
            ],
            "sources": [{"count": n, "fps": 10}],
        }
    )


def test_a_wifi_drop_is_measured_replanned_and_switched_with_nothing_lost(ray_local, tmp_path):
    torch.manual_seed(0)
    model = CamNet().eval()
    graph = capture(model, (torch.randn(1, 3, 128, 128),), timing="analytic")
    topo = cameras()
    plan = partition(graph, topo, "throughput", codec="auto", profiles=CAMNET_PROFILES)
    assert not plan.stages[0].nodes  # at 20 Mbit/s the image goes up (int8), no work on cameras
    adapter = Adapter(graph, codec="auto", profiles=CAMNET_PROFILES, window_s=2.0, hold_s=30.0)
    drop = [ConditionSpec(at="1 s", link="device->gateway", bandwidth="2 Mbit/s")]
    with Pipeline(plan, model, topo, conditions=drop, adapt=adapter, graph=graph) as pipe:
        report = pipe.stream(10)  # the switch is decided at about 3 s (drop at 1 s, 2 s window) and loads in about 2
    switches = report["plan_switches"]
    assert len(switches) == 1, switches  # one drop, one switch (hold time: no flapping)
    s = switches[0]
    assert s["version"] == 1 and s["error"] is None and "link 0 Mbit/s" in s["reason"]
    assert s["predicted_fps_after"] > s["predicted_fps_before"] * 1.15
    assert report["plan_version"] == 1 and pipe.plans[1].stages[0].nodes  # the stem now runs on the cameras
    assert report["frames_delivered"] == report["sent_by_sources"] and report["drops"] == 0
    assert {r["plan_version"] for r in report["timeline"]} == {0, 1}
    png = plot_timeline(report, tmp_path / "timeline.png")
    assert png.stat().st_size > 1000
