"""Memory, privacy, pins, SLO and infeasibility, on a 4-layer chain with the arithmetic written out.

Chain(width=16, depth=4), input [2, 16] float32:
  each Linear(16, 16): 16*16*4 + 16*4 = 1088 B of parameters
  each activation [2, 16]: 2*16*4 = 128 B
fx nodes: x, layers_0_0 (linear), layers_0_1 (relu), ..., layers_3_1 (output).
"""

import dataclasses

import numpy as np
import pytest
import torch

from partition import PartitionError, capture, partition
from partition.bruteforce import brute_force
from partition.pricing import Problem
from tests.models import Chain
from tests.partition.helpers import topology


@pytest.fixture(scope="module")
def chain():
    """The chain with every op costing 1 ms on this host: plans depend on the tiers, not on timing noise."""
    torch.manual_seed(0)
    graph = capture(Chain(16, 4).eval(), (torch.randn(2, 16),), timing="analytic")
    graph.nodes = [dataclasses.replace(n, host_time_s=1e-3 if n.op == "compute" else 0.0) for n in graph.nodes]
    return graph


def tiers_of(plan, *nodes):
    return [plan.assignment[n] for n in nodes]


def test_memory_budget_splits_the_model(chain):
    # a fast device (speed 100) on a slow 1 Mbit/s uplink: without memory limits everything stays on the device
    fast_device = dict(speeds=(100, 1, 1), bandwidth_mbps=(1, 1))
    free = partition(chain, topology(**fast_device))
    assert set(free.assignment.values()) == {"device"}
    # device budget 2000 B: one Linear (1088 B) + every value the device holds (input, Linear out, ReLU out:
    # 3 x 128 B) = 1472 B fits; two Linears need 2176 B of parameters alone
    tight = topology(**fast_device, memory_mb=(0.002, 1, 1))
    plan = partition(chain, tight)
    assert plan.predicted.memory_bytes[0] == 1088 + 3 * 128
    assert plan.optimal and plan.gap == 0.0
    assert plan.assignment["layers_0_0"] == "device" and plan.assignment["layers_1_0"] != "device"
    # and it is the best plan that fits: the oracle over all assignments within the budgets agrees
    p = Problem(chain, tight)
    budget = np.array([t.memory_mb * 1e6 for t in tight.path])
    _, oracle = brute_force(p, key=lambda c: c.latency_s, feasible=lambda a, c: (p.memory(a) <= budget).all())
    assert plan.predicted.latency_s == pytest.approx(oracle.latency_s, rel=1e-6)


def test_keep_input_on_keeps_the_raw_input_on_its_tier(chain):
    # a slow device (0.01) and fast links: the best plan uploads the raw input
    slow_device = topology(speeds=(0.01, 1, 10), bandwidth_mbps=(1000, 1000))
    assert "x" in [c.name for c in partition(chain, slow_device).links[0].tensors]
    plan = partition(chain, slow_device, keep_input_on="device")
    assert plan.assignment["layers_0_0"] == "device"  # x's only consumer
    assert all(c.name != "x" for link in plan.links for c in link.tensors)


def test_keep_input_on_a_middle_tier(chain):
    slow_device = topology(speeds=(0.01, 1, 10), bandwidth_mbps=(1000, 1000))
    plan = partition(chain, slow_device, keep_input_on="gateway")
    assert plan.assignment["layers_0_0"] in ("device", "gateway")
    assert "x" not in [c.name for c in plan.links[1].tensors]


def test_pins_force_a_module_to_a_tier(chain):
    plan = partition(chain, topology(), pins={"layers.2": "gateway"})
    assert tiers_of(plan, "layers_2_0", "layers_2_1") == ["gateway", "gateway"]
    assert plan.assignment["layers_3_0"] in ("gateway", "edge")  # data only moves up


def test_memory_that_nothing_fits_says_which_tier_and_by_how_much(chain):
    # 1000 B per tier cannot hold one Linear (1088 B)
    with pytest.raises(PartitionError, match=r"memory budgets.*MB on tier '\w+'.*MB over.*Raise tiers\[\d\]\.memory"):
        partition(chain, topology(memory_mb=(0.001, 0.001, 0.001)))


def test_slo_that_cannot_be_met_says_by_how_much(chain):
    best = partition(chain, topology()).predicted.latency_s * 1e3
    with pytest.raises(PartitionError, match=r"SLO of 0.0 ms cannot be met: the fastest plan takes [\d.]+ ms \([\d.]+ ms over\)"):
        partition(chain, topology(), latency_slo_ms=0.001)
    assert partition(chain, topology(), latency_slo_ms=best * 1.01).predicted.latency_s * 1e3 <= best * 1.01


def test_contradictory_pins_name_the_node(chain):
    with pytest.raises(PartitionError, match=r"contradict.*'layers_\d_\d'.*pins"):
        partition(chain, topology(), pins={"layers.0": "gateway", "layers.3": "device"})


def test_unknown_pin_suggests_module_paths(chain):
    with pytest.raises(PartitionError, match=r"pin 'layer.2'.*did you mean \['layers.2'"):
        partition(chain, topology(), pins={"layer.2": "edge"})


def test_unknown_tier_objective_and_codec(chain):
    with pytest.raises(PartitionError, match="no tier 'moon'"):
        partition(chain, topology(), keep_input_on="moon")
    with pytest.raises(PartitionError, match="unknown objective"):
        partition(chain, topology(), "speed")
    with pytest.raises(PartitionError, match="unknown codec 'gzip'"):
        partition(chain, topology(), codec="gzip")


def test_bytes_objective_respects_its_latency_bound(chain):
    topo = topology(speeds=(0.5, 1, 4), bandwidth_mbps=(5, 50))
    fastest = partition(chain, topo).predicted
    plan = partition(chain, topo, "bytes", latency_slo_ms=fastest.latency_s * 1e3 * 1.2)
    assert plan.predicted.latency_s <= fastest.latency_s * 1.2
    assert sum(plan.predicted.link_bytes) <= sum(fastest.link_bytes)
