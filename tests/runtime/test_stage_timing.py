"""How a stage's time is taken (no Ray): the executor runs a stage on its event loop or off it by the run's own
time (the same on the loop and off it, so the cost model can mirror the rule), and the report's measured time
per frame leaves out a stage's first batch, which pays once for what later ones reuse."""

import asyncio

import pytest

import runtime.versions as versions
from partition import CostModel, Topology, capture, partition
from partition.zoo import get_model
from runtime.metrics import Series
from runtime.node.executor import Executor
from runtime.stagetimes import stage_times


class _Timed:
    """A stage whose run takes ``seconds`` on a fake clock (the clock ``run_timed`` reads)."""

    def __init__(self, clock: list, seconds: float) -> None:
        self.clock, self.seconds, self.stage, self.batchable = clock, seconds, object(), True

    def run(self, values: list[dict]) -> list:
        self.clock[0] += self.seconds
        return [{"y": 1} for _ in values]


@pytest.mark.parametrize("seconds, inline", [(0.0015, True), (0.0025, False)])
def test_the_executor_runs_a_stage_on_its_loop_when_the_run_itself_is_under_2_ms(monkeypatch, seconds, inline):
    clock = [0.0]
    monkeypatch.setattr(versions.time, "perf_counter", lambda: clock[0])
    executor = Executor("stage 'edge' (edge-0)", None, asyncio.Queue(), None, None, None, 8, 0.01)
    for start in (False, True):  # first off the loop (a thread hop), then on it: the decision is the same
        executor.inline = start
        assert asyncio.run(executor._run(_Timed(clock, seconds), [{}])) == [{"y": 1}]
        assert executor.inline is inline
    executor.inline = False
    asyncio.run(executor._run(_Timed(clock, seconds * 2), [{}, {}]))  # per frame: two frames in twice the time
    assert executor.inline is inline


def test_the_measured_time_per_frame_leaves_out_the_first_batch_and_reports_it_apart():
    s = Series()
    for v in (0.08, 0.01, 0.012, 0.011):
        s.add(v)
    assert s.summary()["first"] == 0.08 and Series().summary()["first"] != Series().summary()["first"]  # nan when empty
    topo = Topology.load("three_tier")
    graph = capture(*get_model("resnet18", [1, 3, 32, 32]), timing="analytic")
    plan = partition(graph, topo, "latency", pins={"stem": "device"})
    first = {"first_batch_s": 0.08, "first_batch_frames": 1}
    nodes = [
        {"node": "device-0", "tier": "device", "frames": 4, "compute_s_total": 0.113, **first},
        {"node": "gateway-0", "tier": "gateway", "frames": 1, "compute_s_total": 0.08, **first},  # one batch: itself
        {"node": "edge-0", "tier": "edge", "frames": 3, "compute_s_total": 0.03},  # no first recorded: the mean
    ]
    rows = {r["node"]: r for r in stage_times({"nodes": nodes}, plan, CostModel(graph, topo))}
    assert rows["device-0"]["measured_s"] == pytest.approx(0.011) and rows["device-0"]["first_batch_s"] == 0.08
    assert rows["gateway-0"]["measured_s"] == pytest.approx(0.08) and rows["gateway-0"]["first_batch_s"] is None
    assert rows["edge-0"]["measured_s"] == pytest.approx(0.01) and rows["edge-0"]["first_batch_s"] is None


def test_a_stage_is_measured_by_its_median_frame_and_its_mean_is_reported_beside_it():
    """One frame of fifteen preempted for 40 ms moves the mean by a fifth and the median not at all."""
    from runtime.metrics import StageMetrics
    from runtime.report import _node_times

    m = StageMetrics("s", "edge-0")
    for took, frames in [(0.080, 1)] + [(0.010, 1)] * 12 + [(0.020, 2), (0.050, 1)]:  # cold first, a batch of 2, a preempted one
        m.compute_s.add(took)
        m.batch.add(frames)
    times = _node_times(m.to_json(), "edge")
    assert times["frame_s_p50"] == pytest.approx(0.010) and times["first_batch_s"] == pytest.approx(0.080)
    topo = Topology.load("three_tier")
    graph = capture(*get_model("resnet18", [1, 3, 32, 32]), timing="analytic")
    plan = partition(graph, topo, "latency", pins={"stem": "device"})
    row = {r["node"]: r for r in stage_times({"nodes": [times]}, plan, CostModel(graph, topo))}["edge-0"]
    assert row["measured_s"] == pytest.approx(0.010) and row["frames"] == 16
    assert row["measured_mean_s"] == pytest.approx((12 * 0.010 + 0.020 + 0.050) / 15)
