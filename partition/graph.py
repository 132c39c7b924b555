"""The captured model: a DAG of ops with what each one costs and produces."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field

import torch
import torch.fx as fx

__all__ = ["TensorSpec", "Node", "Graph"]


@dataclass(frozen=True)
class TensorSpec:
    """Shape and dtype of one value a node produces (``shape=None`` for a non-tensor)."""

    shape: tuple[int, ...] | None
    dtype: str
    nbytes: int

    @classmethod
    def of(cls, value: object) -> list[TensorSpec]:
        """Specs of every leaf of ``value`` (tensors, ints, tuples of them...)."""
        leaves = torch.utils._pytree.tree_leaves(value)
        out = []
        for leaf in leaves:
            if isinstance(leaf, torch.Tensor):
                out.append(cls(tuple(leaf.shape), str(leaf.dtype).removeprefix("torch."), leaf.numel() * leaf.element_size()))
            elif leaf is not None:
                out.append(cls(None, type(leaf).__name__, 8))
        return out

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> TensorSpec:
        return cls(tuple(d["shape"]) if d["shape"] is not None else None, d["dtype"], d["nbytes"])


@dataclass(frozen=True)
class Node:
    """One op of the model.

    ``inputs`` names the nodes whose values it reads; ``bytes_out`` is what must
    cross a link if a consumer sits on a higher tier.
    """

    name: str
    op: str  # "input" or "compute"
    target: str
    module: str  # module path, "" for the top level
    inputs: tuple[str, ...]
    outputs: tuple[TensorSpec, ...]
    flops: int = 0
    param_bytes: int = 0  # every tensor it reads, in full (a tied weight counts for each of its users)
    host_time_s: float = 0.0
    param_keys: tuple[str, ...] = ()  # the storages of those tensors: a tier stores each storage once

    @property
    def bytes_out(self) -> int:
        return sum(s.nbytes for s in self.outputs)


@dataclass
class Graph:
    """A captured model: nodes in topological order plus the fx module to split.

    ``outputs`` lists the node names whose values the model returns (in order).
    """

    nodes: list[Node]
    inputs: list[str]
    outputs: list[str]
    module: fx.GraphModule = field(repr=False)
    method: str = "fx"  # "fx" or "export"
    capture_s: float = 0.0
    timing: str = "measured"  # "measured" on this host, or "analytic" (from FLOPs and bytes: host-independent)
    example_inputs: tuple | None = field(default=None, repr=False)  # what it was captured with (calibration)
    notes: tuple[str, ...] = ()  # what capture changed to make the model traceable (the plan repeats them)
    param_sizes: dict[str, int] = field(default_factory=dict, repr=False)  # storage key -> bytes

    def __repr__(self) -> str:
        return (
            f"Graph({len(self.nodes)} nodes, {len(self.inputs)} input(s), {len(self.outputs)} output(s), "
            f"{self.total_flops / 1e9:.2f} GFLOP, {self.total_param_bytes / 2**20:.1f} MiB params, via {self.method})"
        )

    @functools.cached_property
    def index(self) -> dict[str, int]:
        return {n.name: i for i, n in enumerate(self.nodes)}

    def __getitem__(self, name: str) -> Node:
        return self.nodes[self.index[name]]

    @functools.cached_property
    def consumers(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {n.name: [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                if n.name not in out[i]:
                    out[i].append(n.name)
        return out

    @property
    def total_flops(self) -> int:
        return sum(n.flops for n in self.nodes)

    @property
    def total_param_bytes(self) -> int:
        """Bytes of parameters and buffers, each tensor counted once however many ops read it."""
        return self.param_bytes_of(self.nodes)

    def param_bytes_of(self, nodes) -> int:
        """Parameter bytes a tier running ``nodes`` must hold: each storage once (tied weights too)."""
        keys = {k for n in nodes for k in n.param_keys}
        return sum(self.param_sizes.get(k, 0) for k in keys) + sum(n.param_bytes for n in nodes if not n.param_keys)

    @property
    def host_time_s(self) -> float:
        return sum(n.host_time_s for n in self.nodes)

    def edges(self) -> list[tuple[str, str]]:
        return [(i, n.name) for n in self.nodes for i in n.inputs]
