"""Predicted compute time of every op on every tier, and transfer time on every link.

Compute: calibrated from this host's measurement (``Node.host_time_s``) and the
tier's capacity: ``speed`` (relative to this host) or ``gflops`` (against this
host's effective GFLOP/s on the model). A table of times measured on the real
tier machines (``profiles``) overrides the prediction op by op. On a lab topology (written by
``tierpipe lab up --out``) the speeds are scaled by the lab's ``cpu_scale``, as its CPU quotas are.

Links: a byte takes ``1 / bandwidth`` on the wire. Profiles measured on real tiers may also carry
``profiles["_links"]``: per link (``"device->gateway"``), ``call_s``, the fixed time of one frame's
transfer (the call's overhead and the real propagation; it replaces the topology's ``latency``), and
``cpu_s_per_byte``, the sender's and receiver's time per byte beyond the wire (serialisation, copies:
on a slow device this, not the link, bounds what it can send). A measured bandwidth (re-planning)
changes the wire's part only.

Stage calls: ``profiles["_calls"]``: per tier, ``stage_s``, the runtime's own time per stage call (its
batch runner and stage wrapper), and ``hop_s``, what a stage run off the actor's event loop adds (a
thread hop; stages under ``INLINE_BELOW_S`` run on the loop and skip it). :meth:`CostModel.stage_s`
adds them to a stage's ops; the solvers do not price them (a step per used tier, not a sum over ops),
so they show in the run's report (``stage_times``), not in the plan's choice.

Calibration: ``profiles["_calls"][tier]["scale"]`` (``tierpipe profile --address`` measures it) is the time of the
whole model run as one stage on the tier, in a real pipeline, over its profiled time: the ops are timed alone, a
stage runs among the rest of the pipeline. It scales the tier's ops for the solvers and its stages' times. Where a
one-op stage was also run there, the two points give a line: ``scale`` its slope and ``offset_s`` its intercept,
the time a stage takes per frame beyond its ops (a small stage on a slow tier pays for the frame's arrival first).
The solvers do not price the offset: like the call, it is a step per used tier, not a sum over ops.

CPU quotas: a tier profiled under one (a lab host's cgroup) also has ``budget_s`` and ``period_s`` in
``profiles["_calls"]``. There a stage's time is the expected wall time of its CPU under CFS bandwidth control
(``partition/quota.py``): a stage shorter than the budget runs at full speed, a longer one waits per period.
The solvers price the quota's share (CPU / share), the time of a node busy up to its quota: an upper bound.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .codec import codec_seconds_per_byte, nominal_codec_seconds_per_byte
from .errors import PartitionError
from .graph import Graph
from .quota import quota_wall_s
from .split import INLINE_BELOW_S

if TYPE_CHECKING:
    from .topology import Topology

__all__ = ["CostModel", "LINKS_KEY", "CALLS_KEY", "INLINE_BELOW_S", "link_name"]

LINKS_KEY = "_links"  # in profiles: the links measured on the real tiers
CALLS_KEY = "_calls"  # in profiles: per tier, the runtime's own time per stage call (stage_s) and thread hop (hop_s)
MAX_OFFSET_S = 1.0  # a tier's calibrated offset_s, either way: a stage's time beyond its ops, per frame


def link_name(tiers, j: int) -> str:
    """The key of link ``j`` (tier ``j`` -> ``j + 1``) in ``profiles["_links"]``: ``"device->gateway"``."""
    return f"{tiers[j].name}->{tiers[j + 1].name}"


def _speed(tier, topology: Topology) -> float:
    """The tier's speed relative to this host; on a lab (``topology.lab``), its quota's: ``min(speed x
    cores_per_speed, 1) x cpu_scale`` cores (at most one core: a stage runs one thread).

    >>> from partition import Topology
    >>> t = Topology.load("three_tier")
    >>> [_speed(tier, t) for tier in t.path]
    [0.1, 1.0, 4.0]
    >>> from partition.topology import LabSpec
    >>> lab = t.model_copy(update={"lab": LabSpec(machine_cores=2, cores_per_speed=1, cpu_scale=2 / 2.1)})
    >>> [round(_speed(tier, lab), 4) for tier in lab.path]
    [0.0952, 0.9524, 0.9524]
    """
    if topology.lab is None:
        return tier.speed
    return min(tier.speed * topology.lab.cores_per_speed, 1.0) * topology.lab.cpu_scale


def _calls(calls: dict, tiers) -> tuple[np.ndarray, np.ndarray]:
    """Per tier, (a stage call's time beyond its ops, a thread hop's) from ``profiles["_calls"]``."""
    names = [t.name for t in tiers]
    good = set(calls) <= set(names) and all(
        isinstance(v, dict) and all(isinstance(v.get(k), (int, float)) and v[k] >= 0 for k in ("stage_s", "hop_s")) for v in calls.values()
    )
    if not good:
        raise PartitionError(
            f"profiles: {CALLS_KEY} must map tiers of the path {names} to {{stage_s, hop_s}} in seconds >= 0 "
            f"(got {calls}); profile again with `tierpipe profile MODEL --address ... --out FILE`"
        )
    return tuple(np.array([float(calls.get(n, {}).get(k, 0.0)) for n in names]) for k in ("stage_s", "hop_s"))


def _calibration(calls: dict, tiers) -> np.ndarray:
    """Per tier, the measured over the profiled time of the whole model run as one stage there (``scale``; 1 without)."""
    out = []
    for t in tiers:
        scale = (calls.get(t.name) or {}).get("scale", 1.0)
        if not isinstance(scale, (int, float)) or not 0.05 <= scale <= 20:
            raise PartitionError(
                f"profiles: {CALLS_KEY}.{t.name}.scale must be a number from 0.05 to 20, the measured over the profiled time "
                f"of the whole model on that tier (got {scale!r}); profile again with `tierpipe profile --address`"
            )
        out.append(float(scale))
    return np.array(out)


def _offsets(calls: dict, tiers) -> np.ndarray:
    """Per tier, the time a stage there takes per frame beyond what its ops predict (``offset_s``; 0 without): the
    intercept of the calibration's two points (the whole model and a one-op stage), may be negative."""
    out = []
    for t in tiers:
        offset = (calls.get(t.name) or {}).get("offset_s", 0.0)
        if not isinstance(offset, (int, float)) or not abs(offset) <= MAX_OFFSET_S:
            raise PartitionError(
                f"profiles: {CALLS_KEY}.{t.name}.offset_s must be seconds from -1 to 1, a stage's time on that tier beyond its "
                f"ops (got {offset!r}); profile again with `tierpipe profile --address`"
            )
        out.append(float(offset))
    return np.array(out)


def _quotas(calls: dict, tiers) -> list[tuple[float, float] | None]:
    """Per tier, the (budget_s, period_s) of the CPU quota it was profiled under, or None (no quota)."""
    out = []
    for t in tiers:
        c = calls.get(t.name) or {}
        budget, period = c.get("budget_s"), c.get("period_s")
        ok = isinstance(budget, (int, float)) and isinstance(period, (int, float)) and 0 < budget and 0 < period
        if (budget is not None or period is not None) and not ok:
            raise PartitionError(
                f"profiles: {CALLS_KEY}.{t.name} needs budget_s and period_s > 0 together, the CPU quota it was profiled "
                f"under (got budget_s={budget!r}, period_s={period!r}); profile again with `tierpipe profile --address`"
            )
        out.append((float(budget), float(period)) if ok and budget < period else None)
    return out


class CostModel:
    """Per-op, per-tier compute times and per-link transfer times for one graph on one topology.

    Args:
        graph: the captured model.
        topology: tiers and links; only the tiers up to the sink are used.
        profiles: optional measured seconds, ``{tier_name: {node_name: seconds}}``,
            e.g. from profiling the stage on the real tier machine; used wherever present; and
            optionally ``"_links": {"a->b": {"call_s", "cpu_s_per_byte"}}`` (see the module's docstring).

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
        self.profiles = {k: v for k, v in (profiles or {}).items() if k not in (LINKS_KEY, CALLS_KEY)}
        calls = dict((profiles or {}).get(CALLS_KEY) or {})
        self._links(dict((profiles or {}).get(LINKS_KEY) or {}))
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
        # seconds on the tier per second on this host; on a lab, what the tier's CPU quota gives
        self.scale = np.array([1.0 / _speed(t, topology) if t.speed else self.host_gflops / t.gflops for t in self.tiers])
        for tier, scale in zip(self.tiers, self.scale):
            col = host * scale
            measured = self.profiles.get(tier.name, {})
            if measured and not set(measured) & set(graph.index):
                raise PartitionError(
                    f"profiles for tier {tier.name!r} name none of this model's ops (e.g. {next(iter(measured))!r}): "
                    "they were made for another model; run `tierpipe profile MODEL --address ... --out FILE` for this one"
                )
            if measured:
                col = np.array([measured.get(n.name, c) for n, c in zip(graph.nodes, col)])
            columns.append(col)
        self.table = np.stack(columns, axis=1) if columns else np.zeros((len(host), 0))
        self.stage_call_s, self.hop_s = _calls(calls, self.tiers)
        self.quotas = _quotas(calls, self.tiers)
        self.calibration = _calibration(calls, self.tiers)
        self.offset_s = _offsets(calls, self.tiers)
        self.table *= self.calibration  # the solvers price the calibrated ops
        self.table[[graph.index[i] for i in graph.inputs], :] = 0.0

    def _links(self, measured: dict) -> None:
        names = [link_name(self.tiers, j) for j in range(len(self.tiers) - 1)]
        unknown = set(measured) - set(names)
        if unknown:
            raise PartitionError(
                f"profiles name link(s) {sorted(unknown)} that are not on the topology's path {names}; "
                "profile this topology again (`tierpipe profile MODEL --topology T --address ... --out FILE`)"
            )
        for name, link in measured.items():
            if not isinstance(link, dict) or not {"call_s", "cpu_s_per_byte"} <= set(link):
                raise PartitionError(
                    f"profiles: _links.{name} needs call_s and cpu_s_per_byte (seconds), as `tierpipe profile --address` writes"
                )
        links = self.topology.links
        self.call_s = np.array([measured[n]["call_s"] if n in measured else links[j].latency_ms / 1e3 for j, n in enumerate(names)])
        self.cpu_s_per_byte = np.array([measured[n]["cpu_s_per_byte"] if n in measured else 0.0 for n in names])

    def link_Bps(self) -> np.ndarray:
        """Bytes per second each link carries: the wire's bandwidth, less the senders' and receivers' time per byte."""
        wire = np.array([self.topology.links[j].bandwidth_mbps * 1e6 / 8 for j in range(len(self.tiers) - 1)])
        return 1.0 / (1.0 / wire + self.cpu_s_per_byte) if len(wire) else wire

    @classmethod
    def with_table(cls, graph: Graph, topology: Topology, table: np.ndarray, links: dict | None = None) -> CostModel:
        """A cost model with an explicit ``[nodes, tiers]`` table of seconds (tests, oracles), and ``links`` as profiled."""
        cm = cls(graph, topology, {LINKS_KEY: links} if links else None)
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

    def stage_s(self, nodes, tier: int, calls: bool = True) -> float:
        """A stage's time per frame on tier ``tier``: its ops, the profiled call overhead when it has any,
        and the thread hop when it is slow enough to run off the event loop (as ``runtime/node/executor.py``
        decides from the run's own time); on a tier profiled under a CPU quota, the expected wall time of
        that under the quota (:meth:`quota_wall_s`); then, on a calibrated tier, times its ``scale`` plus its
        ``offset_s`` (never below 0). ``calls=False``: the ops alone, as the solvers price a stage.

        >>> from partition import capture, Topology
        >>> from partition.zoo import get_model
        >>> g = capture(*get_model("resnet18"))
        >>> cm = CostModel(g, Topology.load("three_tier"), {"_calls": {"edge": {"stage_s": 0.001, "hop_s": 0.0005}}})
        >>> ops = [n.name for n in g.nodes]
        >>> round(cm.stage_s(ops, 2) - cm.stage_s(ops, 2, calls=False), 6), cm.stage_s([], 2)
        (0.0015, 0.0)
        """
        ops = float(sum(self.compute_s(n, tier) for n in nodes))
        if not nodes or not calls:
            return ops
        scale, offset = float(self.calibration[tier]), float(self.offset_s[tier])
        ops = ops / scale + float(self.stage_call_s[tier])  # the ops as profiled, the call, the quota; then calibrated
        run = scale * self.quota_wall_s(ops, tier)  # the runtime decides on the run's own time: no hop, no offset
        if run >= INLINE_BELOW_S:
            run = scale * self.quota_wall_s(ops + float(self.hop_s[tier]), tier)
        return max(offset + run, 0.0)

    def quota_wall_s(self, seconds: float, tier: int) -> float:
        """``seconds`` of a tier's priced time (CPU over its quota's share) as the expected wall time of a stage
        under the quota it was profiled under (``partition/quota.py``); ``seconds`` itself on a tier without one.

        >>> from partition import capture, Topology
        >>> from partition.zoo import get_model
        >>> calls = {"device": {"stage_s": 0, "hop_s": 0, "budget_s": 0.001, "period_s": 0.01}}
        >>> cm = CostModel(capture(*get_model("resnet18")), Topology.load("three_tier"), {"_calls": calls})
        >>> round(cm.quota_wall_s(0.005, 0), 4), cm.quota_wall_s(0.005, 1)   # 0.5 ms of CPU on 0.1 core; no quota
        (0.0005, 0.005)
        """
        quota = self.quotas[tier]
        if quota is None:
            return seconds
        budget, period = quota
        return quota_wall_s(seconds * budget / period, budget, period)

    def link_s(self, link: int, nbytes: float) -> float:
        """Time ``nbytes`` take on link ``link`` (tier ``link`` -> ``link + 1``): the wire and the per-byte work, no fixed part."""
        return nbytes / float(self.link_Bps()[link])

    def link_latency_s(self, link: int) -> float:
        """The fixed part of a frame's transfer: the topology's latency, or the profiled call time."""
        return float(self.call_s[link])

    def save_profiles(self, path: str | Path) -> None:
        cols = {t.name: {n.name: float(self.table[i, j]) for i, n in enumerate(self.graph.nodes)} for j, t in enumerate(self.tiers)}
        Path(path).write_text(json.dumps(cols, indent=1))

    @staticmethod
    def load_profiles(path: str | Path) -> dict[str, dict[str, float]]:
        """``{tier: {op: seconds}}``; keys starting with ``_`` (``_about``: where they were measured) are skipped."""
        try:
            data = json.loads(Path(path).read_text())
        except ValueError as exc:
            raise PartitionError(
                f"profiles {path}: not JSON ({exc}); `tierpipe profile MODEL --address ... --out FILE` writes one"
            ) from None
        if not isinstance(data, dict) or not all(isinstance(v, dict) for k, v in data.items() if not k.startswith("_") or k == CALLS_KEY):
            raise PartitionError(f"profiles {path}: expected {{tier: {{op: seconds}}}}, as `tierpipe profile --out` writes")
        return {k: v for k, v in data.items() if not k.startswith("_") or k in (LINKS_KEY, CALLS_KEY)}
