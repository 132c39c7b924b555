"""Emulated conditions over time on a real local Ray pipeline: applied at their times, nothing lost."""

import time

import pytest
import torch

from partition.conditions import ConditionSpec
from runtime import Pipeline
from tests.runtime.test_pipeline import chain_plan, eager, fan_in_topology

pytestmark = pytest.mark.ray_local


def test_conditions_reach_their_nodes_at_their_times_and_frames_stay_exactly_once(ray_local):
    import ray

    topo = fan_in_topology(devices=2, gateways=1, emulate=True)
    model, plan = chain_plan(topo)
    conditions = [
        ConditionSpec(at="0.2 s", link="device->gateway", bandwidth="2 Mbit/s"),  # every device uplink
        ConditionSpec(at="0.2 s", node="device-1", bandwidth="0.5 Mbit/s"),  # then one of them lower still
        ConditionSpec(at="0.3 s", node="gateway-0", speed=0.25),
        ConditionSpec(at="0.3 s", node="device-0", battery="15 %"),
    ]
    inputs = [(torch.randn(1, 16),) for _ in range(40)]
    with Pipeline(plan, model, topo, conditions=conditions, max_batch=1) as pipe:
        outputs = pipe.run(inputs[:20])
        deadline = time.time() + 30
        while time.time() < deadline:  # the clock started with the first frame: wait until all are due
            metrics = {n: ray.get(h.metrics_json.remote()) for n, h in pipe.stages.items()}
            now = {n: m["conditions_now"] for n, m in metrics.items()}
            if now["device-1"].get("bandwidth_mbps") == 0.5 and now["gateway-0"] and now["device-0"].get("battery_pct"):
                break
            time.sleep(0.2)
        outputs += pipe.run(inputs[20:])
        report = pipe.report()
    assert now["device-0"] == {"bandwidth_mbps": 2.0, "battery_pct": 15.0}
    assert metrics["device-0"]["battery_pct"] == 15.0  # what the adapter reads (a sensor on real boards)
    assert now["device-1"] == {"bandwidth_mbps": 0.5}  # later entry wins on its node
    assert now["gateway-0"] == {"speed": 0.25} and now["edge-0"] == {}
    assert all(torch.equal(a, b) for a, b in zip(outputs, eager(model, inputs)))
    assert report["frames_delivered"] == 40 and report["duplicates_dropped"] == 0


def test_without_emulation_conditions_do_not_apply(ray_local):
    import ray

    topo = fan_in_topology(devices=1, gateways=1, emulate=False)
    model, plan = chain_plan(topo)
    with Pipeline(plan, model, topo, conditions=[ConditionSpec(at=0, node="device-0", speed=0.01)], max_batch=1) as pipe:
        pipe.run([(torch.randn(1, 16),) for _ in range(5)])
        assert ray.get(pipe.stages["device-0"].metrics_json.remote())["conditions_now"] == {}
