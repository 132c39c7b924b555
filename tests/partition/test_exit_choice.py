"""Exits chosen with the cut against a brute-force oracle: every objective, an accuracy budget, both solvers."""

import numpy as np
import pytest

from partition import partition
from partition.bruteforce import brute_force_exits
from partition.constraints import make_request
from partition.exit_calib import ExitBudget, ExitCalibration
from partition.exit_choice import ExitCandidates, configurations, exit_terms
from partition.pricing import Problem
from tests.models import random_graph
from tests.partition.helpers import random_problem, topology

TOPO = topology(speeds=(0.1, 1.0, 4.0), nodes=(4, 2, 1), bandwidth_mbps=(2, 50), latency_ms=(5, 5))


def calibration(rng, frames=24, exits=2) -> ExitCalibration:
    """Scores in [0, 1]; a frame's answer agrees with the full model more often when its score is high."""
    scores = rng.uniform(0, 1, (exits, frames))
    agree = (rng.uniform(0, 1, (exits, frames)) < 0.5 + 0.5 * scores).astype(float)
    return ExitCalibration(
        "agreement",
        tuple(f"e{i}" for i in range(exits)),
        ("max_softmax",) * exits,
        tuple(map(tuple, scores.tolist())),
        tuple(map(tuple, agree.tolist())),
    )


def candidates(rng, graph, cal, min_agreement) -> ExitCandidates:
    """Two exits on one path: a node and one of its descendants (a chain's order is its path)."""
    compute = [v for v, n in enumerate(graph.nodes) if n.op != "input"]
    first = int(rng.choice(compute[:-1]))
    below = {first}
    for v in range(first + 1, len(graph.nodes)):
        if any(graph.index[i] in below for i in graph.nodes[v].inputs):
            below.add(v)
    second = int(rng.choice(sorted(below - {first}))) if len(below) > 1 else first
    nodes = (graph.nodes[first].name, graph.nodes[second].name)
    return ExitCandidates(
        names=("e0", "e1"),
        nodes=nodes,
        rules=("max_softmax", "max_softmax"),
        calibration=cal,
        budget=ExitBudget(min_agreement=min_agreement),
        head_host_s=(0.002, 0.001),
        head_param_bytes=(4000, 2000),
        result_bytes=150,
        thresholds=(tuple(cal.thresholds(0, (0.3, 0.7))), tuple(cal.thresholds(1, (0.3, 0.7)))),
    )


def setup(seed, chain):
    rng = np.random.default_rng(seed)
    graph = random_graph(rng, int(rng.integers(4, 7)), chain=chain)
    p = random_problem(rng, graph, TOPO)
    c = candidates(rng, graph, calibration(rng), min_agreement=float(rng.choice([0.8, 0.9, 1.0])))
    return graph, p, c


def oracle_value(objective, figures):
    return {
        "latency": figures["latency_s"],
        "throughput": -figures["throughput_fps"],
        "bytes": figures["bytes"],
        "energy": figures["energy_j"],
    }[objective]


def plan_value(objective, cost):
    return {"latency": cost.latency_s, "throughput": -cost.throughput_fps, "bytes": float(sum(cost.link_bytes)), "energy": cost.energy_j}[
        objective
    ]


@pytest.mark.parametrize("solver", ["exact", "fast"])
@pytest.mark.parametrize("objective", ["latency", "throughput", "bytes", "energy"])
@pytest.mark.parametrize("seed,chain", [(s, s % 2 == 0) for s in range(6)])
def test_exits_and_cut_equal_brute_force(seed, chain, objective, solver):
    graph, p, c = setup(seed, chain)
    slo_ms = 1e3 * 2.0 * p.evaluate(np.zeros(p.n, dtype=int)).latency_s if objective == "bytes" else None
    req = make_request(graph, TOPO, objective, latency_slo_ms=slo_ms)
    oracle = brute_force_exits(p, c, objective, req.lo, req.hi, req.mem, req.slo_s)
    assert oracle is not None
    plan = partition(graph, TOPO, objective, cost_model=p.cost, exits=c, solver=solver, latency_slo_ms=slo_ms)
    ours = plan_value(objective, plan.predicted)
    best = oracle_value(objective, oracle[2])
    if solver == "fast" and objective == "throughput" and not chain:
        assert ours >= best - 1e-9 * abs(best)  # the DP is exact on chains only: never better than optimal
        return
    # bytes are whole numbers per link in a Cost: allow one byte per link of rounding
    assert ours == pytest.approx(best, rel=1e-6, abs=2.0 if objective == "bytes" else 1e-12)
    # the plan says what it chose, and its calibrated agreement keeps the budget
    e = plan.exits
    assert e is not None and e.kind == "agreement" and e.bound == c.budget.min_agreement and e.quality >= e.bound - 1e-12
    assert sum(e.rate_by_tier) == pytest.approx(1.0)
    for live in e.live:
        assert plan.assignment[live.node] == TOPO.path[live.tier].name and live.tier < len(TOPO.path) - 1


def test_expected_figures_by_hand():
    # chain input -> n1 -> n2 -> n3 on device/gateway/edge, n1 on the device, the rest on the gateway;
    # exit e0 at n1 (device) with threshold 0.5: scores [0.9, 0.2, 0.6, 0.1] -> frames 0 and 2 leave: rate 1/2
    rng = np.random.default_rng(0)
    graph = random_graph(rng, 4, chain=True)
    p = random_problem(rng, graph, TOPO)
    cal = ExitCalibration("agreement", ("e0",), ("max_softmax",), ((0.9, 0.2, 0.6, 0.1),), ((1.0, 1.0, 0.0, 1.0),))
    c = ExitCandidates(("e0",), ("n1",), ("max_softmax",), cal, ExitBudget(min_agreement=0.5), (0.0,), (0,), 100, ((0.5,),))
    terms, quality, answered = exit_terms(c, ((0, 0.5, 0),), p)
    assert quality == 0.75  # frame 2 exits with a wrong answer: 3 of 4 agree
    assert terms.reach == (1.0, 0.5, 0.5) and answered == (0.5, 0.0, 0.5)
    a = np.array([0, 0, 1, 1])
    plain, exp = p.evaluate(a), Problem(graph, TOPO, p.cost, None, None, terms).evaluate(a)
    # n1's value crosses link 0 for half the frames; the other half send a 100-byte result on both links
    n1 = graph.nodes[1].bytes_out
    assert exp.link_bytes == (int(0.5 * n1 + 50), int(0.5 * plain.link_bytes[1] + 50))
    assert exp.stage_compute_s[0] == pytest.approx(plain.stage_compute_s[0])
    assert exp.stage_compute_s[1] == pytest.approx(0.5 * plain.stage_compute_s[1])


def test_classes_cover_off_and_monotone_tiers():
    rng = np.random.default_rng(1)
    graph, p, c = setup(1, True)
    found = list(configurations(c, 3))
    # each exit: off, or 2 thresholds x tiers 0..1, tiers non-decreasing: 1 + 4 + 4 + (4 x 4 - 2 x 2 x 1 (tier 1 then 0)) = 21
    assert len(found) == 1 + 4 + 4 + 12
    assert all(cfg[0][2] <= cfg[1][2] for cfg in found if len(cfg) == 2)
    del rng


def test_a_replan_turns_an_exit_on_when_the_uplink_drops_within_the_budget():
    import torch

    from partition import capture
    from partition.replan import Measured, Replanner
    from tests.models import CamNet

    torch.manual_seed(0)
    graph = capture(CamNet().eval(), (torch.randn(1, 3, 32, 32),), timing="analytic")
    topo = topology(speeds=(0.1, 1.0, 4.0), bandwidth_mbps=(200, 200))
    pins = {"stem": "device", "head": "edge"}  # the stem's 1,024-byte output crosses both links
    # 10 frames; threshold 0.5 lets 9 leave (one of them wrong: agreement 0.9), threshold 0.95 lets 5 leave (all right)
    cal = ExitCalibration(
        "agreement", ("stem",), ("max_softmax",), ((0.99, 0.98, 0.97, 0.96, 0.95, 0.9, 0.8, 0.7, 0.6, 0.1),), ((1.0,) * 8 + (0.0, 1.0),)
    )
    # the head costs 0.3 ms on this host: 3 ms on the device (speed 0.1), more than 1,024 B take at 200 Mbit/s (41 us)
    c = ExitCandidates(("stem",), ("stem_5",), ("max_softmax",), cal, ExitBudget(min_agreement=0.9), (3e-4,), (8000,), 128, ((0.5, 0.95),))
    fast = partition(graph, topo, "latency", pins=pins, exits=c)
    assert fast.exits.live == ()  # at 200 Mbit/s an exit costs the camera more than it saves
    replanner = Replanner(graph, topo, "latency", min_gain=0.1, hold_s=0.0, pins=pins, exits=c)
    # the uplink drops to 0.5 Mbit/s: 1,024 B now take 16 ms; leaving on the camera saves most of it for 9 frames in 10
    proposal = replanner.propose(0.0, fast, Measured((0.5, 200.0), (1.0, 1.0, 1.0)))
    assert proposal is not None
    e = proposal.plan.exits
    assert [(x.name, x.tier, x.threshold) for x in e.live] == [("stem", 0, 0.5)] and e.quality == pytest.approx(0.9)
    # 9 frames in 10 send a 128-byte result instead of 1,024 bytes over 0.5 Mbit/s, every frame pays the 3 ms head
    # (the edge's and the fast link's savings are small)
    saved = proposal.predicted_before - proposal.predicted_after
    assert saved == pytest.approx(0.9 * (1024 - 128) * 8 / 0.5e6 - 3e-3, rel=0.05)
    # the running plan is priced with its live exit: at the same measured uplink nothing is better, so no proposal
    # (priced without it, it would look 16 ms slower and a switch to itself would be proposed)
    assert replanner.propose(1.0, proposal.plan, Measured((0.5, 200.0), (1.0, 1.0, 1.0))) is None
