"""A stage's price: its time under a CPU quota (``partition/quota.py``) against a step-by-step simulation of CFS bandwidth
control, the cost model pricing a profiled tier's stages with it, and a tier calibrated on the whole model (no Ray)."""

import numpy as np
import pytest

from partition import CostModel, Topology, capture
from partition.errors import PartitionError
from partition.quota import quota_wall_s
from partition.zoo import get_model


def _simulated_wall(cpu_s: float, budget_s: float, period_s: float, phase_s: float, dt: float = 1e-5) -> float:
    """The oracle: time advances by ``dt``; the budget is whole again at every period's start; the burst runs while
    there is budget and waits while there is none. It starts ``phase_s`` into a period, the budget full."""
    t, credit, left, into = 0.0, budget_s, cpu_s, phase_s
    while left > 1e-12:
        if credit > 1e-12:
            step = min(dt, left, credit)
            credit -= step
            left -= step
        else:
            step = dt
        t += step
        into += step
        if into >= period_s - 1e-12:
            into -= period_s
            credit = budget_s
    return t


@pytest.mark.parametrize("seed", range(6))
def test_expected_wall_under_a_quota_equals_a_step_by_step_simulation(seed):
    rng = np.random.default_rng(seed)
    period = float(rng.uniform(0.005, 0.02))
    budget = float(rng.uniform(0.05, 0.9)) * period
    cpu = float(rng.uniform(0.1, 6.0)) * budget
    phases = (np.arange(40) + 0.5) * period / 40
    oracle = np.mean([_simulated_wall(cpu, budget, period, period - r) for r in phases])  # the refill r after the start
    assert quota_wall_s(cpu, budget, period) == pytest.approx(oracle, rel=0.03, abs=2e-5)


def test_a_quota_runs_a_burst_shorter_than_its_budget_at_full_speed_and_a_long_one_at_its_share():
    assert quota_wall_s(0.0008, 0.001, 0.01) == pytest.approx(0.0008)  # within the budget: this machine's speed
    long = quota_wall_s(1.0, 0.001, 0.01)
    assert 0.95 * 1.0 / 0.1 < long < 1.0 / 0.1  # a second of CPU on a tenth of a core: a little under 10 s
    assert quota_wall_s(0.003, 0.001, 0.01) < 0.003 / 0.1  # three budgets: the first comes at once
    assert quota_wall_s(0.003, None, None) == 0.003 and quota_wall_s(0.003, 0.01, 0.01) == 0.003  # no quota, a whole core


def test_a_tier_profiled_under_a_quota_prices_its_stages_wall_time_and_the_solvers_its_share():
    topo = Topology.load("three_tier")
    graph = capture(*get_model("resnet18", [1, 3, 32, 32]), timing="analytic")
    ops = [n.name for n in graph.nodes if n.op != "input"]
    calls = {"device": {"stage_s": 0.0, "hop_s": 0.0, "budget_s": 0.001, "period_s": 0.0105}}
    # the device's ops as profiled: CPU seconds over its 0.095 core; the first op 0.5 ms of CPU, so 5.25 ms priced
    profiles = {"device": {op: (0.0005 if i == 0 else 0.0) / (0.001 / 0.0105) for i, op in enumerate(ops)}, "_calls": calls}
    cm = CostModel(graph, topo, profiles)
    assert cm.stage_s(ops[:1], 0, calls=False) == pytest.approx(0.00525)  # the solvers: CPU over the share
    assert cm.stage_s(ops[:1], 0) == pytest.approx(0.0005)  # within the budget: full speed
    assert cm.quota_wall_s(0.1, 0) == pytest.approx(quota_wall_s(0.1 * 0.001 / 0.0105, 0.001, 0.0105))
    assert cm.quota_wall_s(0.1, 1) == 0.1  # the gateway has no quota in these profiles
    with pytest.raises(PartitionError, match="_calls.device needs budget_s and period_s > 0 together"):
        CostModel(graph, topo, {"_calls": {"device": {"stage_s": 0.0, "hop_s": 0.0, "budget_s": 0.001}}})


def test_a_tier_calibrated_on_the_whole_model_scales_its_ops_for_the_solvers_and_its_stages():
    topo = Topology.load("three_tier")
    graph = capture(*get_model("resnet18", [1, 3, 32, 32]), timing="analytic")
    ops = [n.name for n in graph.nodes if n.op != "input"]
    profiles = {t.name: {op: 0.001 for op in ops} for t in topo.path}
    plain = CostModel(graph, topo, profiles)
    calls = {"gateway": {"stage_s": 0.0005, "hop_s": 0.0002, "scale": 0.8}}
    cm = CostModel(graph, topo, {**profiles, "_calls": calls})
    assert cm.table[:, 1] == pytest.approx(0.8 * plain.table[:, 1]) and cm.table[:, 0] == pytest.approx(plain.table[:, 0])
    whole = len(ops) * 0.001 + 0.0005 + 0.0002  # the ops as profiled, the call and the hop; then calibrated
    assert cm.stage_s(ops, 1) == pytest.approx(0.8 * whole)
    assert cm.stage_s(ops[:1], 1) == pytest.approx(0.8 * 0.0015)  # 1.5 ms runs on the event loop: no hop
    # the runtime decides on what the run really takes: the calibrated time, not the profiled one
    one = {t.name: {op: (0.001 if i == 0 else 0.0) for i, op in enumerate(ops)} for t in topo.path}
    slow = CostModel(graph, topo, {**one, "_calls": {"gateway": {"stage_s": 0.0005, "hop_s": 0.0002, "scale": 2.0}}})
    assert slow.stage_s(ops[:1], 1) == pytest.approx(2.0 * (0.001 + 0.0005 + 0.0002))  # 3 ms a run: off the loop, with the hop
    two = {t.name: {op: (0.002 if i == 0 else 0.0) for i, op in enumerate(ops)} for t in topo.path}
    fast = CostModel(graph, topo, {**two, "_calls": {"gateway": {"stage_s": 0.0005, "hop_s": 0.0005, "scale": 0.5}}})
    assert fast.stage_s(ops[:1], 1) == pytest.approx(0.5 * (0.002 + 0.0005))  # 1.25 ms a run: on the loop, no hop
    for bad in (0.0, 50.0, "x"):
        with pytest.raises(PartitionError, match="_calls.gateway.scale must be a number from 0.05 to 20"):
            CostModel(graph, topo, {"_calls": {"gateway": {"stage_s": 0.0, "hop_s": 0.0, "scale": bad}}})


def test_the_calibration_line_through_the_whole_model_and_a_one_op_stage_is_what_a_tiers_stages_get():
    """A slow tier's small stage pays for the frame's arrival out of the same quota: an intercept a scale cannot carry."""
    from partition.baseline_plans import probe_plans
    from runtime.calibrate import fit_line

    true_scale, true_offset = 1.3, 0.0004
    measure = lambda profiled: true_offset + true_scale * profiled  # noqa: E731
    assert fit_line((0.02, measure(0.02)), (0.001, measure(0.001))) == pytest.approx((true_scale, true_offset))
    assert fit_line((0.02, 0.026), (0.015, 0.001)) == pytest.approx((1.3, 0.0))  # too close: the scale alone
    assert fit_line((0.02, 0.026), (0.001, 0.024)) == pytest.approx((1.3, 0.0))  # a slope of 0.1: the scale alone
    assert fit_line((0.02, 0.5), (0.001, 0.001)) is None  # even the scale alone is outside the range: left uncalibrated
    assert fit_line((0.02, 0.02), (0.001, 0.0001))[1] == pytest.approx(-0.00005)  # a negative offset, at most half the small stage
    topo = Topology.load("three_tier")
    graph = capture(*get_model("resnet18", [1, 3, 32, 32]), timing="analytic")
    ops = [n.name for n in graph.nodes if n.op != "input"]
    probes = probe_plans(graph, topo)  # the first op on each tier, the outputs on the last
    assert [probes[t.name].stages[j].nodes for j, t in enumerate(topo.path)] == [(ops[0],), (ops[0],), tuple(graph.outputs)]
    profiles = {t.name: {op: 0.001 for op in ops} for t in topo.path}
    calls = {"gateway": {"stage_s": 0.0005, "hop_s": 0.0, "scale": true_scale, "offset_s": true_offset}}
    cm, plain = CostModel(graph, topo, {**profiles, "_calls": calls}), CostModel(graph, topo, profiles)
    assert cm.stage_s(ops[:1], 1) == pytest.approx(true_offset + true_scale * 0.0015)
    assert cm.table[:, 1] == pytest.approx(true_scale * plain.table[:, 1])  # the solvers: the slope, not the intercept
    low = CostModel(graph, topo, {**profiles, "_calls": {"gateway": {"stage_s": 0.0, "hop_s": 0.0, "offset_s": -0.01}}})
    assert low.stage_s(ops[:1], 1) == 0.0  # never below nothing
    for bad in (2.0, "x"):
        with pytest.raises(PartitionError, match="_calls.gateway.offset_s must be seconds from -1 to 1"):
            CostModel(graph, topo, {"_calls": {"gateway": {"stage_s": 0.0, "hop_s": 0.0, "offset_s": bad}}})
