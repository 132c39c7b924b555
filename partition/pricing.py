"""The cost of any assignment (node -> tier), with the same cost model the optimizers use.

Rules (the brief's): data only moves toward the sink, so a node's tier is never
below that of a node feeding it; the model's inputs are born on tier 0; its
outputs must reach the sink tier. A value produced on tier ``i`` and consumed
on tiers above crosses each link in between once, however many consumers it has.

Latency of one frame = compute of every node on its tier + serialisation of every
crossing value on every link + propagation latency of every link (every link is
used, since the outputs must reach the sink).

Energy (the ``energy`` objective, Neurosurgeon's): joules a device spends per frame, its compute
and encode time x the device tier's ``power`` + the bytes it sends x its uplink's ``tx_energy``.

Early exits (``ExitTerms``, from ``exit_choice.py``): with live exits at fixed tiers, every figure is
the expected one per frame. Compute on tier ``t`` and codec work and bytes on link ``j`` count for the
share of frames that reach them (``reach[t]``, ``reach[j + 1]``); exited frames add a small result
frame on every link above their exit, and the heads' compute and parameters a constant per tier.
Memory stays a worst case (any single frame may go on).

Throughput: a node serving ``F`` streams spends ``F x stage time`` per round of
frames; each lower node has its own uplink carrying its ``F`` streams. The system
sustains ``streams / max(F_j x stage_j, F_j x link_j)`` frames per second.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .codec import encoded_nbytes, parse_codec
from .cost import CostModel
from .errors import PartitionError
from .graph import Graph

if TYPE_CHECKING:
    from .topology import Topology

__all__ = ["Cost", "Problem", "ExitTerms", "evaluate"]


@dataclass(frozen=True)
class Cost:
    """Predicted figures of one assignment."""

    latency_s: float
    throughput_fps: float  # all streams together
    stream_fps: float  # each stream
    stage_compute_s: tuple[float, ...]  # per tier, one frame
    link_bytes: tuple[int, ...]  # per link, one frame, encoded
    link_s: tuple[float, ...]  # per link, one frame: serialisation + codec + propagation
    memory_bytes: tuple[int, ...]  # per tier: parameters + every value produced or received (see memory)
    bottleneck: str
    energy_j: float = 0.0  # device (tier 0) joules per frame: compute + encode time x power + radio

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Cost:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in fields})


@dataclass(frozen=True)
class ExitTerms:
    """What live exits at fixed tiers change in the expected cost of one frame (see the module docstring).

    ``reach``: per tier, the share of frames whose stage runs there (``reach[0] == 1``). The rest are
    constants per frame, already weighted by the share they apply to: head compute per tier, result
    frames' bytes and seconds per link, their radio energy on the device, head parameters per tier.
    """

    reach: tuple[float, ...]
    stage_extra_s: tuple[float, ...]
    link_extra_bytes: tuple[float, ...]
    link_extra_s: tuple[float, ...]
    energy_extra_j: float
    mem_extra: tuple[float, ...]


class Problem:
    """A graph, a topology and a cost model as arrays, shared by every optimizer.

    Args:
        codecs: one codec per link (default raw everywhere).
        ratios: measured compressor ratios ``{(node, codec): compressed/uncompressed}``.
        exits: live exits at fixed tiers: every figure becomes the expected one per frame.
    """

    def __init__(
        self,
        graph: Graph,
        topology: Topology,
        cost_model: CostModel | None = None,
        codecs: Sequence[str] | None = None,
        ratios: Mapping[tuple[str, str], float] | None = None,
        exits: ExitTerms | None = None,
    ) -> None:
        self.graph = graph
        self.exits = exits
        self.topology = topology
        self.cost = cost_model or CostModel(graph, topology)
        self.tiers = topology.path
        self.k = len(self.tiers)
        self.n = len(graph.nodes)
        self.codecs = list(codecs) if codecs else ["raw"] * (self.k - 1)
        if len(self.codecs) != self.k - 1:
            raise PartitionError(f"got {len(self.codecs)} codecs for {self.k - 1} link(s); give one per link")
        self.ratios = dict(ratios or {})
        idx = graph.index
        self.preds = [[idx[i] for i in node.inputs] for node in graph.nodes]
        self.succs = [[idx[c] for c in graph.consumers[node.name]] for node in graph.nodes]
        self.is_input = np.array([node.op == "input" for node in graph.nodes])
        self.is_output = np.zeros(self.n, dtype=bool)
        self.is_output[[idx[o] for o in graph.outputs]] = True
        self.compute = self.cost.table  # [n, k] seconds
        self.params = np.array([node.param_bytes for node in graph.nodes], dtype=float)
        self.raw_bytes = np.array([node.bytes_out for node in graph.nodes], dtype=float)
        self.link_bytes = np.stack([self.encoded(codec) for codec in self.codecs], axis=1) if self.k > 1 else np.zeros((self.n, 0))
        self.codec_s = np.zeros((self.n, max(self.k - 1, 0)))
        self.encode_s = np.zeros((self.n, max(self.k - 1, 0)))  # the sender's part of codec_s
        for j, codec in enumerate(self.codecs):
            enc, dec = self.cost.codec_s_per_byte(codec)
            self.encode_s[:, j] = self.raw_bytes * enc * self.cost.scale[j]
            self.codec_s[:, j] = self.encode_s[:, j] + self.raw_bytes * dec * self.cost.scale[j + 1]
        k1 = max(self.k - 1, 0)
        self.stage_extra_s, self.mem_extra = np.zeros(self.k), np.zeros(self.k)
        self.link_extra_bytes, self.link_extra_s, self.energy_extra_j = np.zeros(k1), np.zeros(k1), 0.0
        if exits is not None:  # expected figures: work above an exit counts for the frames that go on
            reach = np.asarray(exits.reach, dtype=float)
            self.compute = self.compute * reach[None, :]
            self.link_bytes = self.link_bytes * reach[None, 1:]
            self.codec_s, self.encode_s = self.codec_s * reach[None, 1:], self.encode_s * reach[None, 1:]
            self.stage_extra_s, self.mem_extra = np.asarray(exits.stage_extra_s, float), np.asarray(exits.mem_extra, float)
            self.link_extra_bytes, self.link_extra_s = np.asarray(exits.link_extra_bytes, float), np.asarray(exits.link_extra_s, float)
            self.energy_extra_j = float(exits.energy_extra_j)
        self.bw_Bps = self.cost.link_Bps()  # the wire, and on profiled links the per-byte work of both ends
        self.prop_s = np.array([self.cost.link_latency_s(j) for j in range(self.k - 1)])
        self.streams = np.array([topology.max_streams(j) for j in range(self.k)], dtype=float)
        self.n_streams = len(topology.source_nodes())
        # per value per link: serialisation + encode on the sender + decode on the receiver
        self.link_time = self.link_bytes / self.bw_Bps[None, :] + self.codec_s if self.k > 1 else np.zeros((self.n, 0))
        # device energy: per op on tier 0 (compute x power), per value sent over the device uplink
        # (encode time x power + bytes x the radio's joules per byte)
        power = topology.path[0].power_w
        self.energy_compute = self.compute[:, 0] * power
        self.energy_send = (
            self.encode_s[:, 0] * power + self.link_bytes[:, 0] * topology.links[0].tx_energy_nj_per_byte * 1e-9
            if self.k > 1
            else np.zeros(self.n)
        )

    def with_codecs(self, codecs: Sequence[str]) -> Problem:
        """The same problem (exits included) with another codec vector."""
        return Problem(self.graph, self.topology, self.cost, list(codecs), self.ratios, self.exits)

    def encoded(self, codec: str) -> np.ndarray:
        """Bytes on the wire of every node's output with ``codec``."""
        _, comp = parse_codec(codec)
        out = np.empty(self.n)
        for i, node in enumerate(self.graph.nodes):
            ratio = self.ratios.get((node.name, codec), 1.0) if comp else 1.0
            spec = node.outputs[0] if len(node.outputs) == 1 else None
            out[i] = encoded_nbytes(node.bytes_out, spec.shape if spec else None, spec.dtype if spec else "", codec, ratio)
        return out

    # ------------------------------------------------------------- assignments
    def as_array(self, assignment: Mapping[str, int | str] | Sequence[int] | np.ndarray) -> np.ndarray:
        if isinstance(assignment, Mapping):
            names = {t.name: i for i, t in enumerate(self.tiers)}
            missing = [n.name for n in self.graph.nodes if n.name not in assignment]
            if missing:
                raise PartitionError(f"assignment has no tier for op(s) {missing[:5]}; assign every op")
            return np.array([names[v] if isinstance(v, str) else int(v) for v in (assignment[n.name] for n in self.graph.nodes)])
        return np.asarray(assignment, dtype=int)

    def violations(self, a: np.ndarray) -> list[str]:
        """Why ``a`` is not a valid assignment (empty when it is)."""
        out = []
        for v in range(self.n):
            if not 0 <= a[v] < self.k:
                out.append(f"{self.graph.nodes[v].name} on tier {a[v]} (tiers are 0..{self.k - 1})")
            if self.is_input[v] and a[v] != 0:
                out.append(f"input {self.graph.nodes[v].name} must be on tier 0 ({self.tiers[0].name}), where data is born")
            for p in self.preds[v]:
                if a[p] > a[v]:
                    out.append(f"{self.graph.nodes[v].name} (tier {a[v]}) reads {self.graph.nodes[p].name} from a higher tier {a[p]}")
        return out

    def reach(self, a: np.ndarray) -> np.ndarray:
        """Highest tier each node's value must reach: its top consumer's, the sink for outputs."""
        hi = a.copy()
        for v in range(self.n):
            for s in self.succs[v]:
                hi[v] = max(hi[v], a[s])
        hi[self.is_output] = self.k - 1
        return hi

    def crossing(self, a: np.ndarray) -> np.ndarray:
        """``[n, links]`` booleans: does node v's value cross link j."""
        hi = self.reach(a)
        j = np.arange(self.k - 1)
        return (a[:, None] <= j[None, :]) & (hi[:, None] > j[None, :])

    def memory(self, a: np.ndarray) -> np.ndarray:
        """Per tier: parameters (each storage once) + every value it produces or receives for one frame.

        The sum of the values bounds the peak live set under any execution order from above (it
        never under-estimates), and it is linear in the assignment, so the exact solver's memory
        rows are the same definition.
        """
        hi = self.reach(a)
        out = np.zeros(self.k)
        for t in range(self.k):
            members = np.flatnonzero(a == t)
            held = (a == t) | ((a < t) & (hi >= t))  # produced here, or received from below
            out[t] = self.graph.param_bytes_of([self.graph.nodes[v] for v in members]) + float(self.raw_bytes[held].sum())
        return out + self.mem_extra

    def evaluate(self, assignment) -> Cost:
        a = self.as_array(assignment)
        bad = self.violations(a)
        if bad:
            raise PartitionError("invalid assignment: " + "; ".join(bad[:5]))
        stage = np.array([self.compute[a == t, t].sum() for t in range(self.k)]) + self.stage_extra_s
        cross = self.crossing(a)
        link_bytes = (cross * self.link_bytes).sum(axis=0) + self.link_extra_bytes if self.k > 1 else np.zeros(0)
        serial = (cross * self.link_time).sum(axis=0) + self.link_extra_s if self.k > 1 else np.zeros(0)
        latency = stage.sum() + serial.sum() + self.prop_s.sum()
        per_round = [(self.streams[t] * stage[t], f"tier {self.tiers[t].name} compute") for t in range(self.k)]
        per_round += [(self.streams[j] * serial[j], f"link {self.tiers[j].name}->{self.tiers[j + 1].name}") for j in range(self.k - 1)]
        worst, name = max(per_round, key=lambda x: x[0])
        energy = self.energy_extra_j + (
            float(self.energy_compute[a == 0].sum() + (cross[:, 0] * self.energy_send).sum())
            if self.k > 1
            else float(self.energy_compute.sum())
        )
        stream_fps = 1.0 / worst if worst > 0 else float("inf")
        return Cost(
            latency_s=float(latency),
            throughput_fps=float(stream_fps * self.n_streams),
            stream_fps=float(stream_fps),
            stage_compute_s=tuple(float(x) for x in stage),
            link_bytes=tuple(int(x) for x in link_bytes),
            link_s=tuple(float(s + p) for s, p in zip(serial, self.prop_s)),
            memory_bytes=tuple(int(x) for x in self.memory(a)),
            bottleneck=name,
            energy_j=energy,
        )

    def rank_figures(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The figures an objective ranks by, for many valid assignments at once (one per row of ``rows``).

        :meth:`evaluate`'s formulas, vectorised to order hundreds of candidates (``explain.py``'s
        neighbours of a plan); :meth:`evaluate` stays the figure of record, and neither validity nor
        memory is checked here.

        Returns:
            ``{"latency_s", "stream_fps", "throughput_fps", "bytes", "energy_j"}``, each ``[rows]``.
        """
        rows = np.asarray(rows, dtype=int)
        stage = np.stack([np.where(rows == t, self.compute[None, :, t], 0.0).sum(axis=1) for t in range(self.k)], axis=1)
        stage = stage + self.stage_extra_s[None, :]
        hi = rows.copy()  # reach, as in :meth:`reach`, for every row
        for v in range(self.n):
            for s in self.succs[v]:
                np.maximum(hi[:, v], rows[:, s], out=hi[:, v])
        hi[:, self.is_output] = self.k - 1
        j = np.arange(self.k - 1)
        cross = (rows[:, :, None] <= j) & (hi[:, :, None] > j)  # [rows, n, links]
        serial = (cross * self.link_time[None]).sum(axis=1) + self.link_extra_s[None, :]  # [rows, links]
        worst = np.concatenate([self.streams[None, :] * stage, self.streams[None, :-1] * serial], axis=1).max(axis=1)
        with np.errstate(divide="ignore"):
            stream_fps = np.where(worst > 0, 1.0 / worst, np.inf)
        energy = np.where(rows == 0, self.energy_compute[None], 0.0).sum(axis=1) + self.energy_extra_j
        if self.k > 1:
            energy = energy + (cross[:, :, 0] * self.energy_send[None]).sum(axis=1)
        return {
            "latency_s": stage.sum(axis=1) + serial.sum(axis=1) + self.prop_s.sum(),
            "stream_fps": stream_fps,
            "throughput_fps": stream_fps * self.n_streams,
            "bytes": (cross * self.link_bytes[None]).sum(axis=(1, 2)) + self.link_extra_bytes.sum(),
            "energy_j": energy,
        }


def evaluate(
    graph: Graph, topology: Topology, assignment, codecs: Sequence[str] | None = None, cost_model: CostModel | None = None
) -> Cost:
    """The predicted cost of ``assignment`` (``{node: tier name or index}`` or a list in node order).

    Raises:
        PartitionError: the assignment breaks a rule (names the node and tiers).
    """
    return Problem(graph, topology, cost_model, codecs).evaluate(assignment)
