"""Topologies and problems built in code for the optimizer tests."""

from partition import CostModel, Topology
from partition.pricing import Problem


def topology(
    speeds=(0.1, 1.0, 4.0), nodes=(1, 1, 1), bandwidth_mbps=(20, 200), memory_mb=(1000, 1000, 1000), latency_ms=(5, 5)
) -> Topology:
    names = ["device", "gateway", "edge", "cloud"][: len(speeds)]
    return Topology.from_dict(
        {
            "name": "test",
            "tiers": [{"name": n, "nodes": c, "speed": s, "memory": f"{m} MB"} for n, c, s, m in zip(names, nodes, speeds, memory_mb)],
            "links": [
                {"from": names[i], "to": names[i + 1], "bandwidth": f"{b} Mbit/s", "latency": f"{lat} ms"}
                for i, (b, lat) in enumerate(zip(bandwidth_mbps, latency_ms))
            ],
        }
    )


def random_problem(rng, graph, topo) -> Problem:
    table = rng.uniform(0, 0.05, (len(graph.nodes), len(topo.path)))
    for i, node in enumerate(graph.nodes):
        if node.op == "input":
            table[i] = 0
    return Problem(graph, topo, CostModel.with_table(graph, topo, table))
