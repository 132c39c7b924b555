"""Topology files: tiers, links, fan-in, sources and hosts, validated with pydantic.

A topology is ordered from where data is born (tier 0, e.g. camera devices) to
where results are consumed (the sink tier). Units are converted once, here:
``bandwidth: "20 Mbit/s"`` becomes ``bandwidth_mbps == 20.0``. Quantities are written with their
units; a bare number such as ``bandwidth: 20000000`` is an error naming the accepted units
(units.py). ``model_dump(by_alias=True)`` writes them back with units, so a dump loads again.

>>> topo = Topology.load("three_tier")
>>> [t.name for t in topo.tiers]
['device', 'gateway', 'edge']
"""

from __future__ import annotations

import functools
import importlib.resources
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from .conditions import ConditionSpec
from .errors import TopologyError
from .safe_yaml import MAX_FILE_BYTES, load_yaml
from .topology_checks import check_semantics, fan_in, format_validation
from .units import quantity_type

__all__ = ["Topology", "TierSpec", "LinkSpec", "SourceSpec", "HostSpec", "LabSpec", "shipped_topologies"]

# the shipped topologies are package data of the `topologies` package: found wherever it is installed
_SHIPPED = Path(str(importlib.resources.files("topologies")))
DTYPES = ("float32", "float16", "bfloat16", "float64", "uint8", "int8", "int16", "int32", "int64", "bool")
MAX_NODES = 100_000  # nodes in one tier


# written with their units ("20 Mbit/s"; a bare number is an error, see units.py), held in the unit of the field's name
Bandwidth = Annotated[quantity_type("bandwidth_mbps"), Field(gt=0)]
Memory = Annotated[quantity_type("memory_mb"), Field(gt=0)]
Millis = Annotated[quantity_type("time_ms"), Field(ge=0)]
Watts = Annotated[quantity_type("power_w"), Field(ge=0)]
NanojoulesPerByte = Annotated[quantity_type("energy_nj_per_byte"), Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TierSpec(_Strict):
    """One tier: how many nodes, how fast each is, how much memory it has."""

    name: str
    nodes: int = Field(1, ge=1, le=MAX_NODES)
    speed: float | None = Field(None, gt=0, description="compute speed relative to the reference CPU (this host = 1.0)")
    gflops: float | None = Field(None, gt=0, description="effective GFLOP/s, used when speed is not given")
    memory_mb: Memory = Field(4096.0, alias="memory")
    accelerator: Literal["cpu", "cuda"] = "cpu"
    labels: dict[str, str] = Field(default_factory=dict)
    power_w: Watts = Field(2.0, alias="power", description="active power of one node while it computes (a camera SoC: 2 W)")

    def node_names(self) -> list[str]:
        return [f"{self.name}-{i}" for i in range(self.nodes)]


class LinkSpec(_Strict):
    """The uplink from every node of tier ``from`` to its parent on tier ``to``."""

    src: str = Field(alias="from")
    dst: str = Field(alias="to")
    bandwidth_mbps: Bandwidth = Field(alias="bandwidth")
    latency_ms: Millis = Field(0.0, alias="latency")
    jitter_ms: Millis = Field(0.0, alias="jitter")
    loss: float = Field(0.0, ge=0.0, lt=1.0)
    tx_energy_nj_per_byte: NanojoulesPerByte = Field(
        100.0, alias="tx_energy", description="sender's radio energy per byte sent (Wi-Fi: ~100 nJ/B; LTE: ~1000 nJ/B)"
    )

    def transfer_s(self, nbytes: float) -> float:
        """Serialisation plus propagation time of ``nbytes`` over this link."""
        return nbytes * 8 / (self.bandwidth_mbps * 1e6) + self.latency_ms / 1e3


class SourceSpec(_Strict):
    """Input streams: ``count`` streams at ``fps`` each, born on device ``nodes``."""

    name: str = "camera"
    count: int | None = Field(None, ge=1)
    fps: float = Field(10.0, gt=0)
    shape: list[Annotated[int, Field(ge=1, le=1 << 31)]] | None = Field(None, max_length=8)
    dtype: Literal[DTYPES] = "float32"
    nodes: list[str] | None = None
    policy: Literal["block", "drop-oldest"] = "block"


class HostSpec(_Strict):
    """Where a node runs, for ``tierpipe cluster up``."""

    address: str
    user: str | None = None
    port: int = Field(22, ge=1, le=65535)
    key: str | None = None
    known_hosts: str | None = Field(None, description="ssh checks the host's key against this file only (a lab writes one)")
    cpus: int | None = Field(None, ge=1)
    memory_mb: Memory | None = Field(None, alias="memory")
    ray: str = Field("ray", description="the ray executable there (a venv's bin/ray when it is not on ssh's PATH)")
    env: dict[str, str] = Field(default_factory=dict, description="environment variables Ray (and so every stage) starts with there")


class LabSpec(_Strict):
    """How the hosts of a topology written by ``tierpipe lab up --out`` were made on one machine.

    The tiers keep their nominal ``speed``; each node's CPU quota is ``speed x cores_per_speed x
    cpu_scale`` cores of that machine, so the cost model predicts each tier at that many cores (at most
    one: a stage runs one thread).
    """

    machine_cores: float = Field(gt=0, description="cores the lab's quotas share")
    cores_per_speed: float = Field(gt=0, description="cores a node of speed 1.0 gets before scaling")
    cpu_scale: float = Field(gt=0, le=1, description="every quota multiplied by this so that their sum fits machine_cores")
    groups: dict[str, list[str]] = Field(default_factory=dict, description="lab host -> the topology nodes it holds")
    netem: bool = Field(False, description="link latency and loss applied by netem (else only bandwidth, by tbf)")
    state: str = Field("", description="the state file `tierpipe lab down` reads")


class Topology(_Strict):
    """A validated topology. Load with :meth:`Topology.load`."""

    name: str = "topology"
    description: str = ""
    tiers: list[TierSpec] = Field(min_length=1)
    links: list[LinkSpec] = Field(default_factory=list)
    fan_in: dict[str, list[str]] = Field(default_factory=dict)
    sources: list[SourceSpec] = Field(default_factory=list)
    sink: str | None = None
    hosts: dict[str, HostSpec] = Field(default_factory=dict)
    emulate: bool = False
    conditions: list[ConditionSpec] = Field(default_factory=list, description="changes over time (conditions.py)")
    lab: LabSpec | None = Field(None, description="set by `tierpipe lab up --out`: how the hosts were made")
    source_file: str | None = Field(None, exclude=True)

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(cls, name_or_path: str | Path) -> Topology:
        """Load a topology from a path, or a shipped one by name (``smart_city``).

        Raises:
            TopologyError: naming the file and the field path of the first problem.
        """
        path = Path(name_or_path)
        if not path.exists():
            shipped = _SHIPPED / f"{Path(str(name_or_path)).stem}.yaml"
            if path.suffix in ("", ".yaml", ".yml") and shipped.exists() and path.parent == Path("."):
                path = shipped
            else:
                raise TopologyError(
                    f"{name_or_path}: no such file and no shipped topology of that name. "
                    f"Shipped topologies: {', '.join(shipped_topologies())}; or give a path to a YAML file."
                )
        if path.is_dir():
            raise TopologyError(f"{path}: is a directory; give the path of a YAML file in it")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise TopologyError(
                f"{path}: {size:,} bytes is over the {MAX_FILE_BYTES:,}-byte limit for a topology file; "
                "a topology lists tiers, links and hosts and fits in a few KB: check that this is the right file"
            )
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TopologyError(f"{path}: not a text file (byte {exc.start} is not UTF-8); give a YAML topology file") from None
        except OSError as exc:
            raise TopologyError(f"{path}: cannot be read ({exc.strerror}); check the path and its permissions") from None
        return cls.from_yaml(text, source=str(path))

    @classmethod
    def from_yaml(cls, text: str, source: str = "<string>") -> Topology:
        data = load_yaml(text, source)
        if data is None:
            raise TopologyError(f"{source}: the file is empty. A topology needs at least 'tiers:' (see topologies/three_tier.yaml).")
        if not isinstance(data, dict):
            raise TopologyError(f"{source}: expected a mapping with 'tiers:', 'links:', ...; got a {type(data).__name__}.")
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> Topology:
        try:
            topo = cls.model_validate({**data, "source_file": source})
        except pydantic.ValidationError as exc:
            raise TopologyError(format_validation(exc, source)) from None
        check_semantics(topo, source)
        return topo

    # ---------------------------------------------------------------- derived
    @property
    def sink_index(self) -> int:
        return self.tier_index(self.sink) if self.sink else len(self.tiers) - 1

    @property
    def path(self) -> list[TierSpec]:
        """The tiers a frame goes through: from the source tier up to the sink."""
        return list(self.tiers[: self.sink_index + 1])

    def tier_index(self, name: str) -> int:
        for i, tier in enumerate(self.tiers):
            if tier.name == name:
                return i
        raise TopologyError(f"{self.source_file}: no tier named {name!r}; tiers are {[t.name for t in self.tiers]}")

    def link_above(self, tier_index: int) -> LinkSpec:
        """The link from tier ``tier_index`` to tier ``tier_index + 1``."""
        return self.links[tier_index]

    @functools.cached_property
    def parents(self) -> dict[str, str]:
        """node name -> the node on the next tier it sends to."""
        out: dict[str, str] = {}
        for upper, lowers in self.children.items():
            for lower in lowers:
                out[lower] = upper
        return out

    @functools.cached_property
    def children(self) -> dict[str, list[str]]:
        """node name -> the nodes of the tier below that feed it (fan-in)."""
        return fan_in(self)

    def source_nodes(self) -> list[str]:
        """One device node per input stream, in stream order."""
        device = self.tiers[0].node_names()
        if not self.sources:
            return list(device)
        streams: list[str] = []
        for src in self.sources:
            nodes = src.nodes or device
            count = src.count or len(nodes)
            streams.extend(nodes[i % len(nodes)] for i in range(count))
        return streams

    @functools.cached_property
    def _streams(self) -> dict[str, int]:
        """Input streams through every node, counted once bottom-up (linear in the number of nodes)."""
        count: dict[str, int] = {}
        for node in self.source_nodes():
            count[node] = count.get(node, 0) + 1
        for tier in self.tiers[1:]:
            for node in tier.node_names():
                count[node] = sum(count.get(c, 0) for c in self.children.get(node, []))
        return count

    def policy_of(self, source: int) -> str:
        """The queue policy of input stream ``source`` (``block`` when no source lists it)."""
        first = 0
        for spec in self.sources:
            count = spec.count or len(spec.nodes or self.tiers[0].node_names())
            if source < first + count:
                return spec.policy
            first += count
        return "block"

    def streams_through(self, node: str) -> int:
        """How many input streams pass through ``node`` (its fan-in in frames)."""
        return self._streams.get(node, 0)

    def max_streams(self, tier_index: int) -> int:
        """The most streams any node of the tier serves: that node is the tier's bottleneck."""
        return max(self.streams_through(n) for n in self.tiers[tier_index].node_names())

    def all_nodes(self) -> list[tuple[TierSpec, str]]:
        return [(tier, node) for tier in self.tiers for node in tier.node_names()]

    def summary(self) -> str:
        lines = [f"topology {self.name!r} ({self.source_file}), {len(self.source_nodes())} input streams, sink {self.path[-1].name!r}"]
        for i, tier in enumerate(self.path):
            cap = f"speed {tier.speed:g}x" if tier.speed else f"{tier.gflops:g} GFLOP/s"
            lines.append(
                f"  tier {i} {tier.name}: {tier.nodes} node(s), {cap}, {tier.memory_mb:g} MB, {tier.accelerator}, "
                f"max {self.max_streams(i)} stream(s) per node"
            )
            if i < len(self.path) - 1:
                link = self.links[i]
                lines.append(f"    link {link.src} -> {link.dst}: {link.bandwidth_mbps:g} Mbit/s, {link.latency_ms:g} ms")
        # a default that decides the shape of the network is said out loud, never assumed silently
        lines += [f"  tier {t.name}: nodes not given, {t.nodes} assumed" for t in self.tiers if "nodes" not in t.model_fields_set]
        return "\n".join(lines)


def shipped_topologies() -> list[str]:
    return sorted(p.stem for p in _SHIPPED.glob("*.yaml"))
