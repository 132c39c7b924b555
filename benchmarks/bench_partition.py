"""Our plans against the baselines for every zoo model x shipped topology, and partitioning time.

    python benchmarks/bench_partition.py

Targets: ours no worse than any baseline on its objective in every case; ResNet-50 over
smart_city in under 0.5 s after capture; a synthetic 2,000-node DAG over 4 tiers in under 5 s.
Also: the throughput DP's gap to brute force on random small DAGs (zero on chains).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import save  # noqa: E402
from partition import CostModel, Topology, capture, partition  # noqa: E402
from partition.bruteforce import brute_force  # noqa: E402
from partition.evaluate import Problem  # noqa: E402
from partition.segments import best_contiguous, topological_orders  # noqa: E402
from partition.topology import shipped_topologies  # noqa: E402
from partition.zoo import get_model, model_names  # noqa: E402
from tests.models import random_graph  # noqa: E402
from tests.partition.helpers import topology  # noqa: E402


def zoo_cases() -> tuple[list[dict], bool]:
    rows, all_ok = [], True
    for name in model_names():
        graph = capture(*get_model(name), repeats=3)
        for topo_name in shipped_topologies():
            topo = Topology.load(topo_name)
            for objective in ("latency", "throughput"):
                for codec in ("raw", "auto"):
                    start = time.perf_counter()
                    plan = partition(graph, topo, objective, codec=codec, model_name=name)
                    seconds = time.perf_counter() - start
                    ours = plan.predicted
                    if objective == "latency":
                        ok = all(ours.latency_s <= c.latency_s + 1e-12 for c in plan.baselines.values())
                    else:
                        ok = all(ours.throughput_fps >= c.throughput_fps * (1 - 1e-9) for c in plan.baselines.values())
                    all_ok &= ok
                    rows.append({
                        "model": name, "topology": topo_name, "objective": objective, "codec": codec,
                        "codecs": list(plan.codecs), "partition_s": seconds, "no_worse_than_baselines": ok,
                        "ours": {"latency_ms": ours.latency_s * 1e3, "fps": ours.throughput_fps,
                                 "uplink_bytes": ours.link_bytes[0]},
                        "baselines": {k: {"latency_ms": c.latency_s * 1e3, "fps": c.throughput_fps,
                                          "uplink_bytes": c.link_bytes[0]} for k, c in plan.baselines.items()},
                    })
                    best_base = min(c.latency_s for c in plan.baselines.values()) if objective == "latency" else \
                        max(c.throughput_fps for c in plan.baselines.values())
                    mine = ours.latency_s if objective == "latency" else ours.throughput_fps
                    unit = "ms" if objective == "latency" else "fps"
                    scale = 1e3 if objective == "latency" else 1
                    print(f"{name:13s} {topo_name:10s} {objective:10s} {codec:4s} ours {mine * scale:8.1f} {unit}  "
                          f"best baseline {best_base * scale:8.1f} {unit}  {seconds * 1e3:6.0f} ms  {'ok' if ok else 'WORSE'}")
    return rows, all_ok


def resnet50_timing() -> dict:
    graph = capture(*get_model("resnet50"), repeats=3)
    topo = Topology.load("smart_city")
    out = {}
    for objective in ("latency", "throughput"):
        times = []
        for _ in range(5):
            start = time.perf_counter()
            partition(graph, topo, objective)
            times.append(time.perf_counter() - start)
        out[objective] = float(np.median(times))
    return out


def synthetic(n: int = 2000) -> dict:
    rng = np.random.default_rng(0)
    graph = random_graph(rng, n)
    topo = topology(speeds=(0.1, 0.5, 2.0, 8.0), nodes=(8, 4, 2, 1), bandwidth_mbps=(10, 50, 500),
                    memory_mb=(1e4,) * 4, latency_ms=(5, 5, 20))
    table = rng.uniform(1e-4, 1e-2, (n, 4)) / np.array([0.1, 0.5, 2.0, 8.0])
    table[0] = 0
    cm = CostModel.with_table(graph, topo, table)
    out = {}
    for objective in ("latency", "throughput"):
        start = time.perf_counter()
        plan = partition(graph, topo, objective, cost_model=cm, orders=4)
        out[objective] = {"seconds": time.perf_counter() - start, "latency_ms": plan.predicted.latency_s * 1e3,
                          "fps": plan.predicted.throughput_fps}
        print(f"synthetic {n}-node DAG, 4 tiers, {objective}: {out[objective]['seconds']:.2f} s")
    return out


def throughput_gap(trials: int = 100) -> dict:
    rng = np.random.default_rng(1)
    topo = topology()
    gaps = {"chain": [], "dag": []}
    for trial in range(trials):
        chain = trial % 2 == 0
        graph = random_graph(rng, int(rng.integers(3, 10)), chain=chain)
        table = rng.uniform(0, 0.05, (len(graph.nodes), 3))
        table[0] = 0
        p = Problem(graph, topo, CostModel.with_table(graph, topo, table))
        lo, hi = np.zeros(p.n, dtype=int), np.where(p.is_input, 0, 2)
        ours = max(p.evaluate(best_contiguous(p, o, lo, hi)[0]).throughput_fps for o in topological_orders(p, 8))
        _, oracle = brute_force(p, key=lambda c: -c.throughput_fps)
        gaps["chain" if chain else "dag"].append(1 - ours / oracle.throughput_fps)
    return {k: {"mean": float(np.mean(v)), "max": float(np.max(v)), "zero_share": float(np.mean(np.array(v) < 1e-9)),
                "cases": len(v)} for k, v in gaps.items()}


def main() -> None:
    rows, all_ok = zoo_cases()
    r50 = resnet50_timing()
    syn = synthetic()
    gap = throughput_gap()
    print(f"resnet50 over smart_city: {r50}")
    print(f"throughput DP gap to brute force: {gap}")
    save("partition", {
        "cases": rows, "all_no_worse_than_baselines": all_ok,
        "resnet50_smart_city_partition_s": r50, "target_resnet50_s": 0.5,
        "synthetic_2000_nodes_4_tiers": syn, "target_synthetic_s": 5.0,
        "throughput_gap_vs_brute_force": gap,
        "met": all_ok and max(r50.values()) < 0.5 and max(v["seconds"] for v in syn.values()) < 5.0
               and gap["chain"]["max"] < 1e-9,
    })


if __name__ == "__main__":
    main()
