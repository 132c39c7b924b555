"""What `tierpipe partition` answers: demand against capacity, energy per frame, the next-best plan, and
baselines priced like the plan. Costs come from fixed tables or analytic timing, never from host timing."""

import io
import json

import numpy as np
import pytest
import torch
from rich.console import Console

from partition import CostModel, Plan, Topology, capture, partition
from partition.codec import encoded_nbytes
from partition.pricing import Problem, evaluate
from tests.models import Chain, random_graph
from tests.partition.helpers import random_problem, topology

# Chain(16, 2) captured: x (input, 64 B), layers_0_0 (Linear), layers_0_1 (ReLU), layers_1_0, layers_1_1;
# every value is [1, 16] float32 = 64 B
CHAIN_OPS = ["x", "layers_0_0", "layers_0_1", "layers_1_0", "layers_1_1"]


def _chain():
    torch.manual_seed(0)
    graph = capture(Chain(16, 2).eval(), (torch.randn(1, 16),), timing="analytic")
    assert [n.name for n in graph.nodes] == CHAIN_OPS
    return graph


def _two_tiers(devices=3, sources=None, power_w=2.0, tx_nj=100.0) -> Topology:
    return Topology.from_dict(
        {
            "name": "two_tier",
            "tiers": [
                {"name": "device", "nodes": devices, "speed": 1.0, "power": f"{power_w} W"},
                {"name": "edge", "nodes": 1, "speed": 1.0},
            ],
            "links": [{"from": "device", "to": "edge", "bandwidth": "1000 Mbit/s", "latency": "0 ms", "tx_energy": f"{tx_nj} nJ/B"}],
            "sources": sources or [],
        }
    )


def _table(graph, device_s: float, edge_s: float) -> np.ndarray:
    """Seconds per compute op on each tier (the input costs nothing)."""
    return np.array([[0.0, 0.0] if n.op == "input" else [device_s, edge_s] for n in graph.nodes])


def _render(plan: Plan) -> str:
    out = io.StringIO()
    console = Console(file=out, width=250)
    for t in plan.tables():
        console.print(t)
    return out.getvalue()


def _line(plan: Plan, start: str) -> str:
    return next(line for line in plan.summary_lines() if line.startswith(start))


@pytest.mark.parametrize("fps, met", [(10, True), (25, False)])
def test_demand_against_capacity(fps, met):
    graph = _chain()
    topo = _two_tiers(sources=[{"name": "camera", "count": 3, "fps": fps}])
    # device ops take 1 s each, so all 4 ops run on the edge: 4 x 5 ms = 20 ms per frame there. The edge serves
    # all 3 streams: 3 x 20 ms = 60 ms per round of frames -> 3 / 0.06 = 50 frames/s. Each camera's own uplink
    # sends 64 B at 1000 Mbit/s (0.5 us): not the bottleneck.
    plan = partition(graph, topo, cost_model=CostModel.with_table(graph, topo, _table(graph, 1.0, 0.005)))
    assert set(plan.assignment.values()) == {"device", "edge"} and plan.assignment["layers_0_0"] == "edge"
    d = plan.demand()
    assert d.capacity_fps == pytest.approx(50.0) == pytest.approx(plan.predicted.throughput_fps)
    assert d.demand_fps == 3 * fps and d.met is met and d.bottleneck == "tier edge compute"
    if met:
        # 3 streams x 10 fps = 30 frames/s against 50: met, 50 / 30 = 1.67x
        assert d.line() == (
            "demand 30.0 frames/s (3 streams x 10 fps); predicted capacity 50.0 frames/s: met, "
            "1.67x headroom (bottleneck: tier edge compute)"
        )
    else:
        # 3 streams x 25 fps = 75 frames/s against 50: 50 / 75 = 67%
        assert d.line() == (
            "demand 75.0 frames/s (3 streams x 25 fps); predicted capacity 50.0 frames/s: not met: "
            "capacity is 67% of demand; bottleneck: tier edge compute"
        )
    assert plan.summary_lines()[0] == d.line()
    assert ("1.67x" if met else "0.67x (not met)") in _render(plan)


def test_demand_of_several_sources_and_of_a_plan_saved_before_plans_carried_it():
    graph = _chain()
    topo = _two_tiers(
        sources=[
            {"name": "camera", "count": 2, "fps": 10, "nodes": ["device-0", "device-1"]},
            {"name": "lidar", "count": 1, "fps": 40, "nodes": ["device-2"]},
        ]
    )
    plan = partition(graph, topo, cost_model=CostModel.with_table(graph, topo, _table(graph, 1.0, 0.005)))
    # the edge serves 2 x 10 + 40 = 60 frames/s x 20 ms = 1.2 s of work per second -> 60 / 1.2 = 50 frames/s
    d = plan.demand()
    assert d.streams == "2 x 10 fps (camera) + 1 x 40 fps (lidar)"
    assert d.demand_fps == 60 and d.capacity_fps == pytest.approx(50.0) and not d.met
    assert Plan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
    old = plan.to_json()
    for key in ("input_streams", "tier_load_fps", "next_best", "baseline_codecs", "baseline_breaks"):
        del old[key]
    before = Plan.from_json(old)
    assert before.demand() is None and before.next_best is None and before.baseline_codecs == {}
    assert before.summary_lines()[0].startswith("predicted capacity 50.0 frames/s")
    assert "tierpipe" in _render(before)


def test_a_topology_without_sources_states_no_demand():
    graph = _chain()
    topo = topology(speeds=(0.1, 1.0), bandwidth_mbps=(20,), latency_ms=(5,))
    plan = partition(graph, topo)
    assert plan.demand() is None
    assert "no demand to compare" in plan.summary_lines()[0]


def test_energy_per_frame_equals_the_hand_computation():
    graph = _chain()
    topo = _two_tiers(devices=1, power_w=2.0, tx_nj=100.0)
    cm = CostModel.with_table(graph, topo, _table(graph, 0.01, 0.001))
    plan = partition(graph, topo, "energy", pins={"layers.0": "device"}, cost_model=cm)
    # layers.0 (2 ops) is pinned to the device; any other op there costs 10 ms x 2 W = 0.02 J, more than sending a
    # 64 B value (6.4 uJ), so the rest runs on the edge: 2 x 0.01 s x 2 W + 64 B x 100 nJ/B = 0.0400064 J
    assert [n for n, t in plan.assignment.items() if t == "device"] == ["x", "layers_0_0", "layers_0_1"]
    assert plan.predicted.energy_j == pytest.approx(2 * 0.01 * 2.0 + 64 * 100e-9)
    assert "energy: 0.04 J per frame on each device" in "\n".join(plan.summary_lines())
    text = _render(plan)
    assert "J/frame (device)" in text and "0.04 " in text
    # the next best runs layers_1_0 on the device too: 0.0400064 + 0.02 J, 50% more
    assert plan.next_best.moved == {"layers_1_0": "device"}
    assert plan.next_best.cost.energy_j == pytest.approx(0.0600064)
    assert "0.06 J/frame, 50.0% worse in energy" in _line(plan, "next best: ")


def test_baselines_are_priced_with_the_plans_codec_and_marked_when_they_break_keep_input_on():
    graph = _chain()
    topo = _two_tiers(devices=1)
    cm = CostModel.with_table(graph, topo, _table(graph, 0.01, 0.001))
    plan = partition(graph, topo, codec="int8", keep_input_on="device", cost_model=cm)
    assert plan.codecs == ("int8",)
    # 'all on edge' sends the input x, [1, 16] float32, as int8: 16 B + 8 B of scale and zero point = 24 B
    assert plan.baseline_codecs["all on edge"] == ("int8",)
    assert plan.baselines["all on edge"].link_bytes == (24,) == (encoded_nbytes(64, (1, 16), "float32", "int8"),)
    assert plan.baseline_breaks["all on edge"] == ("keep_input_on=device: the raw input x leaves device",)
    assert "all on device" not in plan.baseline_breaks
    assert "baseline 'all on edge' breaks keep_input_on=device: the raw input x leaves device" in plan.summary_lines()
    row = next(line for line in _render(plan).splitlines() if "all on edge" in line)
    assert "breaks keep_input_on" in row and "int8" in row


def test_baselines_under_auto_take_the_best_codec_of_the_same_set(zoo):
    from partition.optimize import AUTO_CODECS

    _, _, graph = zoo("resnet18")
    topo = Topology.load("smart_city")
    plan = partition(graph, topo, codec="auto")
    for name, cost in plan.baselines.items():
        codecs = plan.baseline_codecs[name]
        assert len(codecs) == 2 and set(codecs) <= set(AUTO_CODECS)
        raw = evaluate(graph, topo, {**plan.assignment, **_assignment_of(plan, name, graph, topo)}, ["raw", "raw"])
        assert cost.latency_s <= raw.latency_s + 1e-12  # raw is in the set: never priced worse than raw
    assert any(c != "raw" for codecs in plan.baseline_codecs.values() for c in codecs)


def _assignment_of(plan, name, graph, topo):
    from partition.baselines import baseline_assignments

    a = baseline_assignments(Problem(graph, topo))[name]
    return {node.name: plan.tiers[t] for node, t in zip(graph.nodes, a)}


@pytest.mark.parametrize("seed", range(5))
def test_next_best_on_two_tiers_is_the_second_best_of_all_plans(seed):
    # on a chain over 2 tiers every valid plan is one cut: brute force is the oracle
    graph = capture(Chain(16, 3).eval(), (torch.randn(1, 16),), timing="analytic")
    topo = topology(speeds=(0.1, 1.0), bandwidth_mbps=(20,), latency_ms=(5,))
    table = np.random.default_rng(seed).uniform(0, 0.01, (len(graph.nodes), 2))
    table[0] = 0
    cm = CostModel.with_table(graph, topo, table)
    plan = partition(graph, topo, cost_model=cm)
    n = len(graph.nodes)
    every = sorted(evaluate(graph, topo, [0] * p + [1] * (n - p), cost_model=cm).latency_s for p in range(1, n + 1))
    assert plan.predicted.latency_s == pytest.approx(every[0])
    assert plan.next_best.cost.latency_s == pytest.approx(every[1])
    assert _line(plan, "next best: ")


@pytest.mark.parametrize("objective", ["latency", "throughput", "energy", "bytes"])
def test_next_best_is_a_real_different_plan_no_better_than_the_chosen(zoo, objective):
    from partition.solution import ranking_key

    _, _, graph = zoo("resnet18")
    topo = Topology.load("smart_city")
    plan = partition(graph, topo, objective)
    alt = plan.next_best
    assert alt.moved and all(plan.assignment[op] != tier for op, tier in alt.moved.items())
    again = evaluate(graph, topo, {**plan.assignment, **alt.moved}, list(alt.codecs))
    assert again == alt.cost
    assert ranking_key(objective, alt.cost) >= ranking_key(objective, plan.predicted) - 1e-12
    assert alt.change in _line(plan, "next best: ")


def test_rank_figures_match_evaluate():
    rng = np.random.default_rng(0)
    for _ in range(10):
        graph = random_graph(rng, 12)
        topo = topology(nodes=(4, 2, 1))
        p = random_problem(rng, graph, topo)
        rows = []
        for _ in range(8):
            a = np.zeros(p.n, dtype=int)
            for v in range(p.n):  # in topological order: no lower than what it reads
                low = max((a[u] for u in p.preds[v]), default=0)
                a[v] = 0 if p.is_input[v] else rng.integers(low, p.k)
            rows.append(a)
        fig = p.rank_figures(np.stack(rows))
        for i, a in enumerate(rows):
            c = p.evaluate(a)
            assert fig["latency_s"][i] == pytest.approx(c.latency_s, rel=1e-12)
            assert fig["throughput_fps"][i] == pytest.approx(c.throughput_fps, rel=1e-12)
            assert fig["energy_j"][i] == pytest.approx(c.energy_j, rel=1e-12, abs=1e-18)
            assert fig["bytes"][i] == pytest.approx(sum(c.link_bytes))


def test_partition_output_is_the_same_on_two_runs_and_says_ops(capsys):
    from runtime.cli import main

    outputs = []
    for _ in range(2):
        assert main(["partition", "resnet18", "--topology", "three_tier", "--timing", "analytic"]) == 0
        outputs.append([line for line in capsys.readouterr().out.splitlines() if "partitioned in" not in line])
    assert outputs[0] == outputs[1]
    text = "\n".join(outputs[0])
    assert "demand 10.0 frames/s (1 stream x 10 fps)" in text and "next best: " in text
    assert "first .. last op" in text and " ops " in text and "node" not in text
    assert main(["profile", "resnet18", "--timing", "analytic"]) == 0
    header = next(line for line in capsys.readouterr().out.splitlines() if "GFLOP" in line and "params KB" in line)
    assert " op " in header and "node" not in header
