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
