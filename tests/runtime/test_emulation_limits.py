"""Emulation only stretches: a tier whose stage takes longer on this host than its emulated time is named,
with the factor, in the report and on screen, and the run's figures are said to be this host's."""

import pytest
import torch

from runtime.emulation_limits import emulation_limits, limits_sentence
from runtime.pipeline import Pipeline
from runtime.report import summary_line
from tests.runtime.test_pipeline import chain_plan, fan_in_topology, slowed


def test_a_tier_faster_than_this_host_is_named_with_its_factor(ray_local):
    topo = fan_in_topology(devices=1, gateways=1, emulate=True)  # edge speed 2: faster than this host
    model, plan = chain_plan(topo)
    # the device and gateway get 10 ms a frame (far more than the small stage needs here), the edge 1 us (far less)
    plan = slowed(plan, (0.01, 0.01, 1e-6))
    torch.manual_seed(0)
    with Pipeline(plan, model, topo) as pipe:
        pipe.run([(torch.randn(1, 16),) for _ in range(30)])
        report = pipe.report()
    limits = report["emulation_limits"]
    assert [(r["tier"], r["node"], r["faster_than_host"]) for r in limits] == [("edge", "edge-0", True)]
    assert limits[0]["factor"] > 1.1 and limits[0]["batches_over"] == limits[0]["batches"] > 0
    line = summary_line(report)
    assert "tier edge ran" in line and "a tier faster than this host" in line and "bound by this host, not by the plan" in line
    assert "measured bottleneck" in line  # named beside the predicted one


def test_a_saturated_host_is_told_apart_from_a_fast_tier_and_emulation_that_held_says_nothing():
    over = {"node": "gateway-1", "emulated_budget_s": 0.2, "emulated_real_s": 0.5, "over_budget": 4, "batch": {"count": 5, "mean": 2}}
    held = {"node": "device-0", "emulated_budget_s": 0.2, "emulated_real_s": 0.21, "over_budget": 1, "batch": {"count": 5, "mean": 1}}
    tier_of, tiers = {"device-0": 0, "gateway-1": 1}, ("device", "gateway")
    limits = emulation_limits([over, held], tier_of, tiers, (4.0, 1.25))  # both tiers slower than this host
    assert [(r["tier"], r["factor"], r["faster_than_host"]) for r in limits] == [("gateway", 2.5, False)]
    assert limits[0]["tier_ms_per_frame"] == pytest.approx(20.0) and limits[0]["host_ms_per_frame"] == pytest.approx(50.0)
    assert "this host is saturated" in limits_sentence(limits)
    assert emulation_limits([held], tier_of, tiers) == [] and limits_sentence([]) is None
