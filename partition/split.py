"""Mechanism: cut a captured graph into one stage module per tier, given an assignment.

Stage ``t`` receives the values crossing the link below it (tier 0: the model's
inputs), runs its nodes, and sends up the values crossing the link above it,
forwarding those that only pass through. The last stage returns what the model
returns, in the model's structure.

>>> import torch
>>> from partition import capture
>>> from partition.zoo import get_model
>>> model, inputs = get_model("resnet18")
>>> g = capture(model, inputs)
>>> tiers = {n.name: (0 if i < 20 else 2) for i, n in enumerate(g.nodes)}
>>> stages = build_stages(g, tiers, 3)
>>> [len(s.nodes) for s in stages], stages[1].inputs == stages[1].outputs
([20, 0, 55], True)
>>> torch.equal(run_stages(stages, inputs), model(*inputs))
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.fx as fx

from .codec import roundtrip
from .errors import StageError
from .graph import Graph
from .shapes import SYM_SIZE, local_size, shape_only_nodes

# a stage faster than this per frame runs on its actor's event loop, without a thread hop (runtime/actors.py;
# CostModel.stage_s predicts the same)
INLINE_BELOW_S = 0.002

__all__ = ["INLINE_BELOW_S", "StageSpec", "Stage", "stage_specs", "build_stages", "make_stage", "run_stages"]


@dataclass(frozen=True)
class StageSpec:
    """Plain data: which nodes a tier runs, what it receives and what it sends on."""

    tier: int
    tier_name: str
    nodes: tuple[str, ...]
    inputs: tuple[str, ...]  # values received from the tier below (tier 0: model inputs)
    outputs: tuple[str, ...]  # values sent to the tier above ((): the last stage returns the model's output)

    def to_json(self) -> dict:
        return {
            "tier": self.tier,
            "tier_name": self.tier_name,
            "nodes": list(self.nodes),
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
        }

    @classmethod
    def from_json(cls, d: dict) -> StageSpec:
        return cls(d["tier"], d["tier_name"], tuple(d["nodes"]), tuple(d["inputs"]), tuple(d["outputs"]))


@dataclass
class Stage:
    """A stage module ready to run: ``stage(dict_of_inputs) -> dict_of_outputs`` (last: the model output)."""

    spec: StageSpec
    module: fx.GraphModule = field(repr=False)
    last: bool = False
    out_spec: object = field(default=None, repr=False)  # export graphs: the model's output structure (a TreeSpec)

    @property
    def nodes(self) -> tuple[str, ...]:
        return self.spec.nodes

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.spec.inputs

    @property
    def outputs(self) -> tuple[str, ...]:
        return self.spec.outputs

    def __call__(self, values: Mapping[str, object]):
        missing = [n for n in self.spec.inputs if n not in values]
        if missing:
            raise StageError(f"stage {self.spec.tier_name!r} is missing input value(s) {missing}; it expects {list(self.spec.inputs)}")
        out = self.module(*(values[n] for n in self.spec.inputs))
        if self.last:
            if self.out_spec is not None:  # an export graph returns leaves: rebuild what the model returns
                return torch.utils._pytree.tree_unflatten(list(out), self.out_spec)
            return out
        return dict(zip(self.spec.outputs, out))


def stage_specs(graph: Graph, assignment: Mapping[str, int], tier_names: Sequence[str]) -> list[StageSpec]:
    """What each tier runs, receives and sends, for a valid assignment ``{node: tier index}``."""
    k = len(tier_names)
    reach = {}
    for node in graph.nodes:
        top = max([assignment[c] for c in graph.consumers[node.name]], default=assignment[node.name])
        reach[node.name] = k - 1 if node.name in graph.outputs else max(top, assignment[node.name])
    specs = []
    order = [n.name for n in graph.nodes]
    for t in range(k):
        nodes = tuple(n for n in order if assignment[n] == t and graph[n].op != "input")
        if t == 0:
            inputs = tuple(graph.inputs)
        else:
            inputs = tuple(n for n in order if assignment[n] < t <= reach[n])
        outputs = tuple(n for n in order if assignment[n] <= t < reach[n]) if t < k - 1 else ()
        specs.append(StageSpec(t, tier_names[t], nodes, inputs, outputs))
    return specs


def _stage_module(gm: fx.GraphModule, spec: StageSpec, last: bool) -> fx.GraphModule:
    graph = fx.Graph()
    env: dict[str, fx.Node] = {}
    source = {n.name: n for n in gm.graph.nodes}
    for name in spec.inputs:
        env[name] = graph.placeholder(name)
        env[name].meta = dict(source[name].meta)
    members = set(spec.nodes)
    shape_only = shape_only_nodes(gm)

    def lookup(n: fx.Node) -> fx.Node:
        if n.name not in env:
            if n.name in shape_only:  # recomputed here from what this stage holds (shapes.py)
                if n.target is SYM_SIZE and n.args[0].name not in env:
                    local = local_size(graph, n, list(env.values()))
                    if local is None:
                        raise StageError(
                            f"stage {spec.tier_name!r}: no value it holds carries the size {n.name!r} "
                            f"reads from {n.args[0].name!r}; place the nodes using it with a tensor of "
                            "that batch dimension"
                        )
                    env[n.name] = local
                else:
                    env[n.name] = graph.node_copy(n, lookup)
                return env[n.name]
            if n.op != "get_attr":
                raise StageError(
                    f"stage {spec.tier_name!r}: node needs {n.name!r}, which this stage neither "
                    "computes nor receives; the assignment sends data down a tier"
                )
            env[n.name] = graph.get_attr(n.target)
        return env[n.name]

    for n in gm.graph.nodes:
        if n.name in members:
            env[n.name] = graph.node_copy(n, lookup)
    if last:
        out = next(n for n in gm.graph.nodes if n.op == "output")
        graph.output(fx.map_arg(out.args[0], lookup))
    else:
        graph.output(tuple(lookup(source[name]) for name in spec.outputs))
    graph.lint()
    return fx.GraphModule(gm, graph, f"stage_{spec.tier_name}")


def build_stages(graph: Graph, assignment: Mapping[str, int | str], tiers: int | Sequence[str]) -> list[Stage]:
    """One runnable stage per tier (empty tiers forward what passes through them).

    Args:
        graph: the captured model.
        assignment: node name -> tier index (or tier name when ``tiers`` lists names).
        tiers: how many tiers, or their names in order.
    """
    names = [f"tier{i}" for i in range(tiers)] if isinstance(tiers, int) else list(tiers)
    index = {n: i for i, n in enumerate(names)}
    assign = {k: (index[v] if isinstance(v, str) else int(v)) for k, v in assignment.items()}
    specs = stage_specs(graph, assign, names)
    return [make_stage(graph.module, s, s.tier == len(specs) - 1) for s in specs]


def make_stage(gm: fx.GraphModule, spec: StageSpec, last: bool) -> Stage:
    """The runnable stage of ``spec`` cut from the captured module ``gm``."""
    return Stage(spec, _stage_module(gm, spec, last), last, _out_spec(gm) if last else None)


def _out_spec(gm: fx.GraphModule):
    """The output structure of a torch.export module (its pytree codegen), or None for fx graphs."""
    info = getattr(getattr(gm.graph, "_codegen", None), "pytree_info", None)
    return getattr(info, "out_spec", None)


def run_stages(stages: Sequence[Stage], inputs: Sequence[object], codecs: Sequence[str] | None = None):
    """Run the stages in order in this process, as the wire would: values cross each link through its codec.

    Each crossing value is copied (as serialising it would), then passed through
    ``roundtrip(value, codec)``. With raw codecs the result equals the model's.
    """
    values: dict[str, object] = dict(zip(stages[0].inputs, inputs))
    with torch.inference_mode():
        for t, stage in enumerate(stages):
            out = stage(values)
            if stage.last:
                return out
            codec = codecs[t] if codecs else "raw"
            values = {k: (roundtrip(v.clone(), codec) if isinstance(v, torch.Tensor) else v) for k, v in out.items()}
    raise StageError("no stages to run")
