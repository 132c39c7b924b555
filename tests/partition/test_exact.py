"""The exact (MILP) solver against the brute-force oracle: every objective and constraint."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from partition import CostModel, partition
from partition.bruteforce import brute_force
from partition.errors import PartitionError
from partition.pricing import Problem
from partition.solution import objective_value
from tests.models import random_graph
from tests.partition.helpers import topology

# fan-in on both: 4 devices -> 2 gateways -> 1 edge; 8 -> 4 -> 2 -> 1
SHAPES = {
    3: dict(speeds=(0.1, 1.0, 4.0), nodes=(4, 2, 1), bandwidth_mbps=(20, 200), latency_ms=(5, 5)),
    4: dict(speeds=(0.1, 0.5, 2.0, 8.0), nodes=(8, 4, 2, 1), bandwidth_mbps=(10, 50, 500), latency_ms=(5, 5, 20)),
}


def tied(rng, graph):
    """Give some nodes shared parameter storages (tied weights): a tier stores each storage once."""
    sizes = {f"w{i}": int(rng.integers(1, 50)) * 1000 for i in range(3)}
    nodes = []
    for node in graph.nodes:
        if node.op != "input" and rng.random() < 0.5:
            keys = tuple(sorted(set(rng.choice(list(sizes), size=int(rng.integers(1, 3))).tolist())))
            node = dataclasses.replace(node, param_keys=keys, param_bytes=sum(sizes[k] for k in keys))
        nodes.append(node)
    graph.nodes = nodes
    graph.param_sizes = sizes
    return graph


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 8),
    tiers=st.sampled_from([3, 4]),
    objective=st.sampled_from(["latency", "throughput", "bytes", "energy"]),
    memory=st.booleans(),
    pin=st.booleans(),
    slo=st.booleans(),
)
def test_exact_solver_equals_brute_force(seed, n, tiers, objective, memory, pin, slo):
    rng = np.random.default_rng(seed)
    graph = tied(rng, random_graph(rng, n, inputs=int(rng.integers(1, 3)) if n > 2 else 1))
    table = rng.uniform(0, 0.05, (len(graph.nodes), tiers))
    table[[i for i, node in enumerate(graph.nodes) if node.op == "input"]] = 0
    free = topology(**SHAPES[tiers], memory_mb=(1e3,) * tiers)
    mem_mb = (1e3,) * tiers
    if memory:
        # the device may hold a random share of what the whole model needs there: binding, often
        everything = Problem(graph, free, CostModel.with_table(graph, free, table)).memory(np.zeros(len(graph.nodes), int))[0]
        mem_mb = (everything * rng.uniform(0.2, 0.9) / 1e6,) + mem_mb[1:]
    topo = topology(**SHAPES[tiers], memory_mb=mem_mb)
    cm = CostModel.with_table(graph, topo, table)
    p = Problem(graph, topo, cm)
    pins = {}
    if pin:
        node = graph.nodes[int(rng.integers(len(graph.inputs), len(graph.nodes)))]
        pins = {node.name: topo.path[int(rng.integers(0, tiers))].name}
    budget = np.array([t.memory_mb * 1e6 for t in topo.path])
    names = [t.name for t in topo.path]

    def allowed(a):
        return (p.memory(a) <= budget).all() and all(names[a[graph.index[v]]] == t for v, t in pins.items())

    _, fastest = brute_force(p, key=lambda c: c.latency_s, feasible=lambda a, c: allowed(a))
    slo_s = None
    if slo and fastest is not None:
        slo_s = fastest.latency_s * rng.uniform(1.0, 2.0)
    bound = slo_s if slo_s is not None else (1.5 * fastest.latency_s if fastest is not None else None)

    def feasible(a, c):
        if not allowed(a) or (slo_s is not None and c.latency_s > slo_s * (1 + 1e-9)):
            return False
        return objective != "bytes" or c.latency_s <= bound * (1 + 1e-9)

    _, oracle = brute_force(p, key=lambda c: objective_value(objective, c), feasible=feasible)
    kwargs = dict(cost_model=cm, pins=pins, latency_slo_ms=slo_s * 1e3 if slo_s is not None else None, solver="exact")
    if oracle is None:
        with pytest.raises(PartitionError):
            partition(graph, topo, objective, **kwargs)
        return
    plan = partition(graph, topo, objective, **kwargs)
    assert objective_value(objective, plan.predicted) == pytest.approx(objective_value(objective, oracle), rel=1e-6, abs=1e-12)
    assert plan.optimal and plan.gap == 0.0
    assert "MILP" in plan.method or "min-cut" in plan.method


def test_exact_beats_the_dp_where_the_dp_misses_and_says_so():
    # seed 7's DAGs include some where the DP over contiguous segments misses the optimum (the gap test in
    # test_optimal prints how many): the exact plan equals the oracle there, the fast one does not
    rng = np.random.default_rng(7)
    topo = topology(**SHAPES[3])
    misses = 0
    for _ in range(40):
        graph = random_graph(rng, int(rng.integers(4, 9)))
        table = rng.uniform(0, 0.05, (len(graph.nodes), 3))
        table[0] = 0
        cm = CostModel.with_table(graph, topo, table)
        fast = partition(graph, topo, "throughput", cost_model=cm, solver="fast")
        exact = partition(graph, topo, "throughput", cost_model=cm, solver="exact")
        _, oracle = brute_force(Problem(graph, topo, cm), key=lambda c: -c.throughput_fps)
        assert exact.predicted.throughput_fps == pytest.approx(oracle.throughput_fps, rel=1e-6)
        assert exact.optimal and not fast.optimal and fast.gap is None
        misses += fast.predicted.throughput_fps < oracle.throughput_fps * (1 - 1e-6)
    assert misses >= 1  # the case this solver exists for happened


def test_auto_solver_under_a_tiny_time_budget_falls_back_and_reports_a_gap():
    # 300 nodes in 3 tiers with a binding device budget: 1 ms is not enough to prove anything
    rng = np.random.default_rng(3)
    graph = random_graph(rng, 300)
    table = rng.uniform(0, 0.05, (300, 3))
    table[0] = 0
    topo = topology(**SHAPES[3])
    plan = partition(graph, topo, "throughput", cost_model=CostModel.with_table(graph, topo, table), solver="auto", time_budget_s=0.001)
    assert not plan.optimal
    assert plan.gap is None or 0 < plan.gap <= 1
    assert plan.optimality().startswith(("within", "optimality not proven"))


def test_exact_picks_codecs_jointly_within_the_accuracy_budget():
    """codec=auto: the MILP chooses every link's codec with the cut; the oracle tries every codec vector
    (6 x 6) and every assignment, keeping only combinations whose lossy codecs meet the accuracy budget."""
    import itertools

    import torch

    from partition import capture
    from partition.bruteforce import valid_assignments
    from partition.calibration import AccuracyBudget, calibration_inputs, compression_ratios, measure_accuracy
    from partition.optimize import AUTO_CODECS
    from tests.models import Chain

    torch.manual_seed(0)
    graph = capture(Chain(64, 3).eval(), (torch.randn(8, 64),), timing="analytic")
    topo = topology(speeds=(0.5, 1.0, 4.0), bandwidth_mbps=(0.2, 2), latency_ms=(5, 5))  # scarce links
    cm = CostModel(graph, topo)
    plan = partition(graph, topo, "latency", codec="auto", cost_model=cm, solver="exact")
    calib = calibration_inputs(tuple(graph.example_inputs), count=4)
    ratios = compression_ratios(graph, calib[0], AUTO_CODECS)
    with torch.inference_mode():
        reference = [graph.module(*x) for x in calib]
    best = float("inf")
    for vec in itertools.product(AUTO_CODECS, repeat=2):
        p = Problem(graph, topo, cm, list(vec), ratios)
        for a in valid_assignments(p):
            cost = p.evaluate(a)
            if cost.latency_s >= best:
                continue
            lossy = [j for j, c in enumerate(vec) if "int8" in c or "fp16" in c]
            used = [j for j in lossy if p.crossing(a)[:, j].any()]
            if used:
                acc = measure_accuracy(graph, {n.name: int(t) for n, t in zip(graph.nodes, a)}, 3, list(vec), calib, reference)
                if not acc.within(AccuracyBudget()):
                    continue
            best = cost.latency_s
    assert plan.predicted.latency_s == pytest.approx(best, rel=1e-6)
    assert plan.optimal and any(c != "raw" for c in plan.codecs)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 8), tiers=st.sampled_from([3, 4]))
def test_fast_energy_cut_equals_brute_force(seed, n, tiers):
    """Without binding constraints the min-cut on device joules is exact, and says so."""
    rng = np.random.default_rng(seed)
    graph = random_graph(rng, n)
    table = rng.uniform(0, 0.05, (len(graph.nodes), tiers))
    table[0] = 0
    # a 3 W device on a 500 nJ/B uplink: sending and computing both cost
    topo = topology(**SHAPES[tiers], memory_mb=(1e3,) * tiers)
    topo = topo.model_copy(
        update={
            "tiers": [topo.tiers[0].model_copy(update={"power_w": 3.0}), *topo.tiers[1:]],
            "links": [topo.links[0].model_copy(update={"tx_energy_nj_per_byte": 500.0}), *topo.links[1:]],
        }
    )
    cm = CostModel.with_table(graph, topo, table)
    plan = partition(graph, topo, "energy", cost_model=cm, solver="fast")
    _, oracle = brute_force(Problem(graph, topo, cm), key=lambda c: c.energy_j)
    assert plan.predicted.energy_j == pytest.approx(oracle.energy_j, rel=1e-6, abs=1e-15)
    assert plan.optimal and "min-cut" in plan.method


def test_energy_arithmetic_on_a_two_op_chain():
    # x -> a -> b over device/gateway/edge; device power 2 W, uplink 100 nJ/B (the defaults), 10 Mbit/s
    # a on the device: 10 ms x 2 W = 20 mJ of compute; a's output, 1000 B, sent: 1000 x 100 nJ = 0.1 mJ
    from partition.graph import Graph, Node, TensorSpec

    def node(name, inputs, nbytes):
        return Node(name, "compute" if inputs else "input", "op", name, inputs, (TensorSpec((nbytes // 4,), "float32", nbytes),), 0, 0, 0.0)

    graph = Graph([node("x", (), 4000), node("a", ("x",), 1000), node("b", ("a",), 40)], ["x"], ["b"], module=None, timing="analytic")
    topo = topology(bandwidth_mbps=(10, 100))
    table = np.array([[0, 0, 0], [0.010, 0.001, 0.0005], [0.010, 0.001, 0.0005]])
    p = Problem(graph, topo, CostModel.with_table(graph, topo, table))
    assert p.evaluate([0, 0, 1]).energy_j == pytest.approx(0.010 * 2 + 1000 * 100e-9)
    assert p.evaluate([0, 1, 1]).energy_j == pytest.approx(4000 * 100e-9)  # only x is sent
    # the energy plan sends the smaller input rather than compute 20 mJ: x (0.4 mJ) < a (20.1 mJ)
    plan = partition(graph, topo, "energy", cost_model=CostModel.with_table(graph, topo, table))
    assert plan.assignment["a"] != "device" and plan.predicted.energy_j == pytest.approx(4e-4)
