"""Profiled links (``profiles["_links"]``, from `tierpipe profile --address`): a transfer's fixed time and its
ends' time per byte beyond the wire, priced exactly and by every solver as the brute-force oracle prices them;
and a re-plan with profiles that honours a tier measured slower (profiles override the tiers' speeds)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from partition import CostModel, Topology, capture, partition
from partition.bruteforce import brute_force
from partition.errors import PartitionError
from partition.pricing import Problem
from partition.replan import Measured, Replanner
from partition.solution import objective_value
from partition.zoo import get_model
from tests.models import random_graph
from tests.partition.helpers import topology


def _links(rng) -> dict:
    return {
        name: {"call_s": float(rng.uniform(0, 0.02)), "cpu_s_per_byte": float(rng.uniform(0, 2e-6))}
        for name in ("device->gateway", "gateway->edge")
    }


def test_a_frame_pays_each_links_call_time_and_its_ends_time_per_byte_on_top_of_the_wire():
    rng = np.random.default_rng(0)
    graph = random_graph(rng, 4, chain=True)
    topo = topology(bandwidth_mbps=(20, 200), latency_ms=(5, 5))
    table = np.where([[n.op == "input"] for n in graph.nodes], 0.0, 0.01) * np.ones((4, 3))
    links = {"device->gateway": {"call_s": 0.003, "cpu_s_per_byte": 4e-7}, "gateway->edge": {"call_s": 0.001, "cpu_s_per_byte": 0.0}}
    p = Problem(graph, topo, CostModel.with_table(graph, topo, table, links))
    edge = np.where(p.is_input, 0, 2)  # everything but the input on the edge: the input crosses both links
    nbytes = graph.nodes[0].bytes_out
    wire = (8 / 20e6, 8 / 200e6)
    expected = 0.03 + 0.003 + nbytes * (wire[0] + 4e-7) + 0.001 + nbytes * wire[1]  # no topology latency: the calls replace it
    assert p.evaluate(edge).latency_s == pytest.approx(expected, rel=1e-9)
    plain = Problem(graph, topo, CostModel.with_table(graph, topo, table))
    assert plain.evaluate(edge).latency_s == pytest.approx(0.03 + 0.010 + nbytes * sum(wire), rel=1e-9)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 8),
    objective=st.sampled_from(["latency", "throughput"]),
    solver=st.sampled_from(["exact", "fast"]),
)
def test_solvers_equal_brute_force_with_profiled_links(seed, n, objective, solver):
    rng = np.random.default_rng(seed)
    chain = solver == "fast"  # the fast throughput path is exact on chains (test_optimal)
    graph = random_graph(rng, n, chain=chain)
    topo = topology(bandwidth_mbps=(20, 200), latency_ms=(5, 5))
    table = rng.uniform(0, 0.05, (len(graph.nodes), 3))
    table[[i for i, node in enumerate(graph.nodes) if node.op == "input"]] = 0
    cm = CostModel.with_table(graph, topo, table, _links(rng))
    _, oracle = brute_force(Problem(graph, topo, cm), key=lambda c: objective_value(objective, c))
    plan = partition(graph, topo, objective, cost_model=cm, solver=solver)
    assert objective_value(objective, plan.predicted) == pytest.approx(objective_value(objective, oracle), rel=1e-6, abs=1e-12)


def test_profiles_naming_a_link_off_the_path_are_refused_with_the_links_it_has():
    graph = capture(*get_model("resnet18", [1, 3, 32, 32]), timing="analytic")
    with pytest.raises(PartitionError, match=r"link\(s\) \['camera->edge'\].*'device->gateway', 'gateway->edge'"):
        CostModel(graph, Topology.load("three_tier"), {"_links": {"camera->edge": {"call_s": 0.0, "cpu_s_per_byte": 0.0}}})


def test_a_replan_with_profiles_honours_a_tier_measured_slower():
    """Profiles override the tiers' speeds, so a measured slowdown must scale them: an edge measured 50x
    slower than its profile moves work to the gateway (before the fix, the re-planner kept the plan)."""
    topo = Topology.load("three_tier")
    graph = capture(*get_model("resnet18", [1, 3, 64, 64]), timing="analytic")
    analytic = CostModel(graph, topo)
    profiles = {t.name: {n.name: float(analytic.table[i, j]) for i, n in enumerate(graph.nodes)} for j, t in enumerate(topo.path)}
    current = partition(graph, topo, "throughput", profiles=profiles)
    assert set(current.assignment.values()) >= {"edge"}
    replanner = Replanner(graph, topo, "throughput", profiles=profiles, hold_s=0.0)
    assert replanner.propose(0.0, current, Measured((None, None), (1.0, 1.0, 1.0))) is None  # as profiled: keep it
    proposal = replanner.propose(1.0, current, Measured((None, None), (1.0, 1.0, 50.0)))
    assert proposal is not None and proposal.predicted_fps_after > 1.15 * proposal.predicted_fps_before
    moved = [op for op, tier in proposal.plan.assignment.items() if tier == "gateway"]
    assert len(moved) > len([op for op, tier in current.assignment.items() if tier == "gateway"])


def test_a_profiled_stage_call_is_added_to_stages_that_run_off_the_event_loop_and_bad_ones_are_refused():
    """``profiles["_calls"]``: every stage with ops pays the runtime's call (``stage_s``); the runtime hops to a
    thread for a stage whose run takes 2 ms or more (``INLINE_BELOW_S``), and the profiled hop is then part of its time too."""
    topo = Topology.load("three_tier")
    graph = capture(*get_model("resnet18", [1, 3, 32, 32]), timing="analytic")
    ops = [n.name for n in graph.nodes if n.op != "input"]
    table = np.zeros((len(graph.nodes), 3))
    table[graph.index[ops[0]], :] = 0.0005  # 0.5 ms
    table[graph.index[ops[1]], :] = 0.003  # 3 ms
    table[graph.index[ops[2]], :] = 0.0015  # 1.5 ms
    cm = CostModel.with_table(graph, topo, table)
    calls = {"device": {"stage_s": 0.002, "hop_s": 0.01}, "gateway": {"stage_s": 0.0002, "hop_s": 0.001}}
    cm.stage_call_s, cm.hop_s = CostModel(graph, topo, {"_calls": calls}).stage_call_s, CostModel(graph, topo, {"_calls": calls}).hop_s
    assert cm.stage_s(ops[1:2], 0) == pytest.approx(0.015)  # off the loop: ops, call and hop
    assert cm.stage_s(ops[0:1], 1) == pytest.approx(0.0007)  # 0.7 + 1 ms < 2 ms: on the loop, no hop
    # the runtime decides on the run's own time, without the hop: 1.7 ms runs on the loop though 2.7 with the hop would not
    assert cm.stage_s(ops[2:3], 1) == pytest.approx(0.0017)
    assert cm.stage_s(ops[0:1], 0) == pytest.approx(0.0125)  # 2.5 ms with the call: the runtime hops
    assert cm.stage_s(ops[1:2], 1, calls=False) == pytest.approx(0.003)
    assert cm.stage_s(ops[1:2], 2) == pytest.approx(0.003)  # no call profiled for the edge
    assert cm.stage_s([], 0) == 0.0
    for bad in ({"cloud": {"stage_s": 0, "hop_s": 0}}, {"edge": {"stage_s": -1.0, "hop_s": 0}}, {"edge": 0.001}):
        with pytest.raises(PartitionError, match="_calls must map tiers"):
            CostModel(graph, topo, {"_calls": bad})


def test_ops_timed_one_frame_every_interval_idle_between_frames(monkeypatch):
    """``time_nodes(every_s=...)`` waits before each run after the first for what is left of ``every_s``, outside
    the timed ops (recorded waits, no real sleeping: the verdict does not depend on this host's speed)."""
    import torch

    import partition.timing
    from partition.timing import time_nodes
    from partition.tracer import trace

    waits: list[float] = []
    monkeypatch.setattr(partition.timing.time, "sleep", waits.append)
    model, inputs = get_model("resnet18", [1, 3, 16, 16])
    gm, _ = trace(model, inputs)
    with torch.no_grad():
        times = time_nodes(gm, inputs, repeats=4, warmup=1, stat="mean", every_s=0.1)
        tight = time_nodes(gm, inputs, repeats=4, warmup=1, stat="mean")
    assert len(waits) == 4 and all(0.0 <= w <= 0.1 for w in waits)  # 5 runs: a wait before each but the first
    assert len(waits) == 4  # a tight loop (every_s=0) waits never
    assert times.keys() == tight.keys() and sum(times.values()) > 0
