"""Predicted compute time of every op on every tier, and transfer time on every link.

Compute: calibrated from this host's measurement (``Node.host_time_s``) and the
tier's capacity: ``speed`` (relative to this host) or ``gflops`` (against this
host's effective GFLOP/s on the model). A table of times measured on the real
tier machines (``profiles``) overrides the prediction op by op.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .codec import codec_seconds_per_byte, nominal_codec_seconds_per_byte
from .errors import PartitionError
from .graph import Graph

if TYPE_CHECKING:
    from .topology import Topology

__all__ = ["CostModel"]


class CostModel:
    """Per-op, per-tier compute times and per-link transfer times for one graph on one topology.

    Args:
        graph: the captured model.
        topology: tiers and links; only the tiers up to the sink are used.
        profiles: optional measured seconds, ``{tier_name: {node_name: seconds}}``,
            e.g. from profiling the stage on the real tier machine; used wherever present.

    >>> from partition import capture, Topology
    >>> from partition.zoo import get_model
    >>> cm = CostModel(capture(*get_model("resnet18")), Topology.load("three_tier"))
    >>> cm.table.shape          # [nodes, tiers]
    (75, 3)
    """

    def __init__(self, graph: Graph, topology: Topology, profiles: dict[str, dict[str, float]] | None = None) -> None:
        self.graph = graph
        self.topology = topology
        self.tiers = topology.path
        self.profiles = profiles or {}
        unknown = set(self.profiles) - {t.name for t in self.tiers}
        if unknown:
            raise PartitionError(
                f"profiles name tier(s) {sorted(unknown)} that are not on the topology's path "
                f"{[t.name for t in self.tiers]}; rename them or drop those entries"
            )
        host = np.array([n.host_time_s for n in graph.nodes])
        flops = float(graph.total_flops)
        self.host_gflops = flops / max(graph.host_time_s, 1e-12) / 1e9 if flops else 1.0
        columns = []
        # seconds on the tier per second on this host
        self.scale = np.array([1.0 / t.speed if t.speed else self.host_gflops / t.gflops for t in self.tiers])
        for tier, scale in zip(self.tiers, self.scale):
            col = host * scale
            measured = self.profiles.get(tier.name, {})
            if measured:
                col = np.array([measured.get(n.name, c) for n, c in zip(graph.nodes, col)])
            columns.append(col)
        self.table = np.stack(columns, axis=1) if columns else np.zeros((len(host), 0))
        self.table[[graph.index[i] for i in graph.inputs], :] = 0.0

    @classmethod
    def with_table(cls, graph: Graph, topology: Topology, table: np.ndarray) -> CostModel:
        """A cost model with an explicit ``[nodes, tiers]`` table of seconds (tests, oracles)."""
        cm = cls(graph, topology)
        cm.table = np.asarray(table, dtype=float).copy()
        return cm

    def codec_s_per_byte(self, codec: str) -> tuple[float, float]:
        """(encode, decode) host seconds per raw byte of ``codec``: measured on this host, or the
        analytic host's fixed figures when the graph was captured with ``timing="analytic"``."""
        if self.graph.timing == "analytic":
            return nominal_codec_seconds_per_byte(codec)
        return codec_seconds_per_byte(codec)

    def compute_s(self, node: str, tier: int) -> float:
        return float(self.table[self.graph.index[node], tier])

    def link_s(self, link: int, nbytes: float) -> float:
        """Serialisation time of ``nbytes`` on link ``link`` (tier ``link`` -> ``link + 1``), no propagation."""
        return nbytes * 8.0 / (self.topology.links[link].bandwidth_mbps * 1e6)

    def link_latency_s(self, link: int) -> float:
        return self.topology.links[link].latency_ms / 1e3

    def save_profiles(self, path: str | Path) -> None:
        cols = {t.name: {n.name: float(self.table[i, j]) for i, n in enumerate(self.graph.nodes)} for j, t in enumerate(self.tiers)}
        Path(path).write_text(json.dumps(cols, indent=1))

    @staticmethod
    def load_profiles(path: str | Path) -> dict[str, dict[str, float]]:
        return json.loads(Path(path).read_text())
