"""The optimizers against a brute-force oracle that enumerates every valid assignment."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from partition.bruteforce import brute_force, valid_assignments
from partition.mincut import min_cost_assignment
from partition.segments import best_contiguous, topological_orders
from tests.models import random_graph
from tests.partition.helpers import random_problem, topology

TOPOLOGIES = {
    3: topology(),
    4: topology(speeds=(0.1, 0.5, 2.0, 8.0), nodes=(8, 4, 2, 1), bandwidth_mbps=(10, 50, 500), memory_mb=(1e3,) * 4, latency_ms=(5, 5, 20)),
}


def latency_cut(p):
    lo = np.zeros(p.n, dtype=int)
    hi = np.where(p.is_input, 0, p.k - 1)
    return min_cost_assignment(p.preds, p.succs, p.is_output, p.compute, p.link_time, lo, hi)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 10), tiers=st.sampled_from([3, 4]), chain=st.booleans(), inputs=st.integers(1, 2))
def test_latency_min_cut_equals_brute_force(seed, n, tiers, chain, inputs):
    rng = np.random.default_rng(seed)
    p = random_problem(rng, random_graph(rng, max(n, inputs + 1), chain=chain, inputs=inputs), TOPOLOGIES[tiers])
    ours = p.evaluate(latency_cut(p))
    _, oracle = brute_force(p, key=lambda c: c.latency_s)
    assert ours.latency_s == pytest.approx(oracle.latency_s, rel=1e-7, abs=1e-12)


def test_oracle_enumerates_exactly_the_valid_assignments():
    rng = np.random.default_rng(0)
    p = random_problem(rng, random_graph(rng, 4, chain=True), TOPOLOGIES[3])
    # chain input -> a -> b -> c over 3 tiers: input on 0, then non-decreasing a <= b <= c:
    # C(3 + 3 - 1, 3) = 10 assignments
    found = list(valid_assignments(p))
    assert len(found) == 10 and all(not p.violations(a) for a in found)


def best_throughput(p, orders=8):
    lo = np.zeros(p.n, dtype=int)
    hi = np.where(p.is_input, 0, p.k - 1)
    best = None
    for order in topological_orders(p, orders):
        a, bottleneck = best_contiguous(p, order, lo, hi)
        cost = p.evaluate(a)
        assert 1 / cost.stream_fps == pytest.approx(bottleneck)  # the DP's value is the evaluated one
        if best is None or cost.throughput_fps > best.throughput_fps:
            best = cost
    return best


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 10), tiers=st.sampled_from([3, 4]))
def test_throughput_dp_is_exact_on_chains(seed, n, tiers):
    rng = np.random.default_rng(seed)
    p = random_problem(rng, random_graph(rng, n, chain=True), TOPOLOGIES[tiers])
    _, oracle = brute_force(p, key=lambda c: -c.throughput_fps)
    assert best_throughput(p).throughput_fps == pytest.approx(oracle.throughput_fps, rel=1e-9)


def test_throughput_gap_on_dags_is_small_and_reported(capsys):
    rng = np.random.default_rng(7)
    gaps = []
    for _ in range(60):
        p = random_problem(rng, random_graph(rng, int(rng.integers(4, 10))), TOPOLOGIES[3])
        _, oracle = brute_force(p, key=lambda c: -c.throughput_fps)
        ours = best_throughput(p)
        assert ours.throughput_fps <= oracle.throughput_fps * (1 + 1e-9)  # never better than optimal
        gaps.append(1 - ours.throughput_fps / oracle.throughput_fps)
    with capsys.disabled():
        print(
            f"\nthroughput gap to brute force on 60 random DAGs: mean {np.mean(gaps):.4f}, max {np.max(gaps):.4f}, "
            f"zero in {np.mean(np.array(gaps) < 1e-9):.0%}"
        )
    assert np.mean(gaps) < 0.05


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 10), tiers=st.sampled_from([3, 4]))
def test_latency_dp_over_segments_is_exact_on_chains(seed, n, tiers):
    # the fallback used when memory binds: on a chain every valid assignment is contiguous
    rng = np.random.default_rng(seed)
    p = random_problem(rng, random_graph(rng, n, chain=True), TOPOLOGIES[tiers])
    lo, hi = np.zeros(p.n, dtype=int), np.where(p.is_input, 0, p.k - 1)
    a, value = best_contiguous(p, np.arange(p.n), lo, hi, objective="latency")
    cost = p.evaluate(a)
    assert cost.latency_s == pytest.approx(value + p.prop_s.sum())
    _, oracle = brute_force(p, key=lambda c: c.latency_s)
    assert cost.latency_s == pytest.approx(oracle.latency_s, rel=1e-9)
