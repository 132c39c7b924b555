"""Re-planning from measured figures: no Ray, fixed per-op costs."""

import dataclasses

import pytest
import torch

from partition import capture, partition
from partition.replan import Measured, Replanner, measured_topology
from tests.models import Chain
from tests.partition.helpers import topology


@pytest.fixture(scope="module")
def chain():
    torch.manual_seed(0)
    graph = capture(Chain(64, 4).eval(), (torch.randn(16, 64),), timing="analytic")
    # every op 1 ms on this host: the plans follow the links and speeds, nothing else
    graph.nodes = [dataclasses.replace(n, host_time_s=1e-3 if n.op == "compute" else 0.0) for n in graph.nodes]
    return graph


def test_measured_topology_overrides_links_and_speeds_only():
    topo = topology()
    m = measured_topology(topo, Measured((2.0, None), (None, 4.0, None)))
    assert [link.bandwidth_mbps for link in m.links] == [2.0, 200]
    assert [t.speed for t in m.tiers] == [0.1, 0.25, 4.0]  # gateway 4x slower than planned
    assert m.tiers[0].memory_mb == topo.tiers[0].memory_mb


def test_a_wifi_drop_gives_a_clearly_better_plan_once_then_holds(chain):
    # a device 10x slower than the gateway on a 100 Mbit/s uplink: the activations go up early
    topo = topology(speeds=(0.1, 1.0, 4.0), bandwidth_mbps=(100, 1000))
    plan = partition(chain, topo, "throughput")  # raw at every cut
    replanner = Replanner(chain, topo, "throughput", min_gain=0.15, hold_s=10.0, codec="auto")
    # as planned: the link is not the bottleneck (4 KB in 0.33 ms), no codec or cut gains 15%
    assert replanner.propose(0.0, plan, Measured((100.0, 1000.0))) is None
    # the uplink drops to 0.05 Mbit/s: every 4 KB activation now takes 0.66 s to send; the new plan
    # sends int8 at the cut (4x fewer bytes), as "full model on Wi-Fi, light model on 4G"
    drop = Measured((0.05, 1000.0))
    proposal = replanner.propose(1.0, plan, drop)
    assert proposal is not None
    assert proposal.predicted_after < proposal.predicted_before * 0.85
    assert proposal.predicted_fps_after > proposal.predicted_fps_before
    assert "0.05 Mbit/s" in proposal.reason
    assert "int8" in proposal.plan.codecs[0]
    replanner.switched(1.0)
    assert replanner.propose(5.0, plan, drop) is None  # hold time: no second switch yet
    assert replanner.propose(11.5, plan, drop) is not None  # the old plan is still worse after it


def test_cost_model_is_refused():
    with pytest.raises(ValueError, match="profiles"):
        Replanner(None, topology(), cost_model=object())


class Funnel(torch.nn.Module):
    """64 -> 64 -> 4 -> 64 -> 8: a narrow value a device can send cheaply once it has computed it."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = torch.nn.Linear(64, 64), torch.nn.Linear(64, 4)
        self.c, self.d = torch.nn.Linear(4, 64), torch.nn.Linear(64, 8)

    def forward(self, x):
        return self.d(torch.relu(self.c(torch.relu(self.b(torch.relu(self.a(x)))))))


def test_a_low_battery_plans_the_device_for_energy_and_the_rest_for_throughput():
    from partition.bruteforce import brute_force
    from partition.cost import CostModel
    from partition.pricing import Problem

    torch.manual_seed(0)
    graph = capture(Funnel().eval(), (torch.randn(16, 64),), timing="analytic")
    graph.nodes = [dataclasses.replace(n, host_time_s=1e-3 if n.op == "compute" else 0.0) for n in graph.nodes]
    base = topology(speeds=(1.0, 0.5, 4.0), bandwidth_mbps=(20, 50))
    # an LTE-like radio: sending the 4 KB input costs the camera more than computing up to the 4-wide value
    topo = base.model_copy(update={"links": [base.links[0].model_copy(update={"tx_energy_nj_per_byte": 10_000.0}), base.links[1]]})
    plan = partition(graph, topo, "throughput")
    replanner = Replanner(graph, topo, "throughput", min_gain=0.15, hold_s=10.0)
    problem = Problem(graph, topo, CostModel(graph, topo))
    _, least = brute_force(problem, key=lambda c: c.energy_j)
    assert plan.predicted.energy_j > least.energy_j * 1.2  # the throughput plan spends the battery
    assert replanner.propose(0.0, plan, Measured((20.0, 50.0))) is None  # nothing changed
    proposal = replanner.propose(1.0, plan, Measured((20.0, 50.0)), "device-0 battery 15%", battery_low=True)
    assert proposal is not None and proposal.reason == "device-0 battery 15%"
    new = proposal.plan
    assert new.predicted.energy_j == pytest.approx(least.energy_j, rel=1e-9)
    # the rest, for throughput: the best bottleneck among the plans that spend the least device joules
    _, oracle = brute_force(problem, key=lambda c: 1.0 / c.stream_fps, feasible=lambda a, c: c.energy_j <= least.energy_j * (1 + 1e-9))
    assert new.predicted.stream_fps == pytest.approx(oracle.stream_fps, rel=1e-9)
    energy_only = partition(graph, topo, "energy")
    assert new.predicted.stream_fps >= energy_only.predicted.stream_fps * (1 - 1e-9)
    replanner.switched(1.0)
    # battery low and nothing else changed: the energy-first plan is not proposed again
    assert replanner.propose(20.0, new, Measured((20.0, 50.0)), battery_low=True) is None


def test_not_before_keeps_a_node_off_the_device(chain):
    topo = topology(speeds=(4.0, 1.0, 1.0), bandwidth_mbps=(20, 200))
    first = next(n.name for n in chain.nodes if n.op == "compute")
    assert partition(chain, topo, "latency").assignment[first] == "device"  # a fast device keeps it
    plan = partition(chain, topo, "latency", not_before={first: "gateway"})
    assert plan.assignment[first] != "device"
    with pytest.raises(Exception, match="not_before"):
        partition(chain, topo, "latency", pins={first: "device"}, not_before={first: "gateway"})


def camnet_with_an_exit():
    """CamNet on 32 x 32 images with an exit after its stem; 10 calibration frames: threshold 0.5 lets 9 leave
    (one of them wrong: agreement 0.9), 0.95 lets 5 leave (all right); the head costs 0.3 ms on this host."""
    from partition.exit_calib import ExitBudget, ExitCalibration
    from partition.exit_choice import ExitCandidates
    from tests.models import CamNet

    torch.manual_seed(0)
    graph = capture(CamNet().eval(), (torch.randn(1, 3, 32, 32),), timing="analytic")
    cal = ExitCalibration(
        "agreement", ("stem",), ("max_softmax",), ((0.99, 0.98, 0.97, 0.96, 0.95, 0.9, 0.8, 0.7, 0.6, 0.1),), ((1.0,) * 8 + (0.0, 1.0),)
    )
    c = ExitCandidates(("stem",), ("stem_5",), ("max_softmax",), cal, ExitBudget(min_agreement=0.9), (3e-4,), (8000,), 128, ((0.5, 0.95),))
    return graph, c


def test_a_plan_made_with_exits_carries_them_and_is_replanned_with_them():
    from partition import Plan

    graph, c = camnet_with_an_exit()
    topo = topology(speeds=(0.1, 1.0, 4.0), bandwidth_mbps=(200, 200))
    pins = {"stem": "device", "head": "edge"}  # the stem's 1,024-byte output crosses both links
    plan = partition(graph, topo, "latency", pins=pins, exits=c)
    assert plan.exits.live == () and plan.exits.candidates == c  # at 200 Mbit/s the exit costs more than it saves
    assert Plan.from_json(plan.to_json()).exits == plan.exits  # what it chose from rides in the plan's JSON
    replanner = Replanner(graph, topo, "latency", min_gain=0.1, hold_s=0.0, pins=pins)  # no exits= given
    proposal = replanner.propose(0.0, Plan.from_json(plan.to_json()), Measured((0.5, 200.0), (1.0, 1.0, 1.0)))
    assert proposal is not None
    assert [(e.name, e.tier, e.threshold) for e in proposal.plan.exits.live] == [("stem", 0, 0.5)]
    assert proposal.exits == "exits: stem on at 0.5 on device (agreement 0.9, budget 0.9)"
    assert proposal.reason == "measured device->gateway 0.5 Mbit/s, gateway->edge 200 Mbit/s; " + proposal.exits
    assert proposal.plan.exits.candidates == c  # and the next re-plan has them too


def test_a_replan_that_cannot_keep_the_exits_says_so():
    graph, c = camnet_with_an_exit()
    topo = topology(speeds=(0.1, 1.0, 4.0), bandwidth_mbps=(0.5, 200))
    pins = {"stem": "device", "head": "edge"}
    running = partition(graph, topo, "latency", pins=pins, exits=c)
    assert [e.name for e in running.exits.live] == ["stem"]
    # a plan whose exits were set by hand (or saved before plans carried their candidates): nothing to choose from
    bare = dataclasses.replace(running, exits=dataclasses.replace(running.exits, candidates=None))
    replanner = Replanner(graph, topo, "latency", min_gain=-1.0, hold_s=0.0, pins=pins)  # min_gain -1: propose any plan
    proposal = replanner.propose(0.0, bare, Measured((0.5, 200.0)))
    assert proposal.plan.exits is None
    assert "exits dropped (stem@0.5 on device): the running plan carries no exit candidates" in proposal.reason
    assert "give the Adapter exits=" in proposal.reason
    # given the candidates again, the re-plan keeps the exit
    again = Replanner(graph, topo, "latency", min_gain=-1.0, hold_s=0.0, pins=pins, exits=c).propose(0.0, bare, Measured((0.5, 200.0)))
    assert [e.name for e in again.plan.exits.live] == ["stem"] and again.exits.startswith("exits: unchanged")


def test_exits_change_names_what_changed():
    from partition.exit_choice import ExitPlan
    from partition.exit_stage import LiveExit
    from partition.replan import exits_change

    tiers = ("device", "gateway", "edge")

    def plan(*live, quality=0.95):
        exits = tuple(LiveExit(i, n, f"{n}_1", t, "max_softmax", thr) for i, n, t, thr in live)
        return ExitPlan(exits, "agreement", 0.9, quality, (), 96, ())

    a = plan((0, "l1", 0, 0.9), (1, "l2", 1, 0.8))
    assert exits_change(None, None, tiers) == exits_change(plan(), plan(), tiers) == ""
    assert exits_change(a, plan((0, "l1", 0, 0.6), (1, "l2", 0, 0.8), quality=0.92), tiers) == (
        "exits: l1 threshold 0.9 -> 0.6, l2 moved gateway -> device (agreement 0.92, budget 0.9)"
    )
    assert exits_change(a, plan(), tiers) == "exits: l1 off, l2 off"
    assert exits_change(a, a, tiers) == "exits: unchanged (agreement 0.95, budget 0.9)"
