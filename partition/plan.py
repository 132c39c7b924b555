"""A Plan: frozen plain data saying which tier runs what and what crosses each link.

It is the only thing that crosses from ``partition`` to ``runtime``: names,
numbers and tensor specs, JSON round-trippable, never live modules.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .calibration import Accuracy
from .errors import PlanError, StageError
from .exit_choice import ExitPlan
from .exit_stage import exit_stage
from .explain import Alternative, Demand, demand_of, plan_tables, stream_demand, summary_lines
from .graph import TensorSpec
from .pricing import Cost
from .split import Stage, StageSpec, make_stage
from .tracer import trace

__all__ = ["Crossing", "LinkPlan", "Plan", "structure_digest", "deployment_facts"]

FORMAT = 1


def structure_digest(topology) -> str:
    """SHA-256 of what a running pipeline is bound to: the path's tiers, their nodes and who sends to
    whom. Link figures and speeds are not in it (they change while a pipeline runs; a re-plan for
    measured figures keeps the digest)."""
    import hashlib

    shape = {
        "path": [t.name for t in topology.path],
        "nodes": {t.name: t.node_names() for t in topology.path},
        "parents": _path_parents(topology),
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


def deployment_facts(topology, fixed_s: list[float] | None = None) -> dict:
    """The ``parents``, ``link_figures``, ``topology_digest`` and the streams' demand (``input_streams``,
    ``tier_load_fps``) a plan made for ``topology`` carries. ``fixed_s``: each link's fixed time per transfer
    as the cost model priced it (a profiled link's call time; by default the topology's latency)."""
    path = topology.path
    links = tuple(
        {
            "src": path[j].name,
            "dst": path[j + 1].name,
            "bandwidth_mbps": topology.links[j].bandwidth_mbps,
            "latency_ms": fixed_s[j] * 1e3 if fixed_s is not None else topology.links[j].latency_ms,
        }
        for j in range(len(path) - 1)
    )
    return {
        "parents": _path_parents(topology),
        "link_figures": links,
        "topology_digest": structure_digest(topology),
        **stream_demand(topology),
    }


def _path_parents(topology) -> dict[str, str]:
    on_path = {n for t in topology.path for n in t.node_names()}
    return {n: p for n, p in sorted(topology.parents.items()) if n in on_path and p in on_path}


@dataclass(frozen=True)
class Crossing:
    """One value crossing a link."""

    name: str
    shape: tuple[int, ...] | None
    dtype: str
    raw_bytes: int
    encoded_bytes: int


@dataclass(frozen=True)
class LinkPlan:
    src: str
    dst: str
    codec: str
    tensors: tuple[Crossing, ...]
    bytes: int
    time_s: float


@dataclass(frozen=True)
class Plan:
    """The partitioner's decision and its predicted figures.

    ``assignment`` maps every node to a tier name; ``stages`` has one entry per tier
    on the path (an empty stage forwards what passes through its tier).
    """

    model: str
    topology: str
    objective: str
    tiers: tuple[str, ...]
    assignment: dict[str, str]
    stages: tuple[StageSpec, ...]
    links: tuple[LinkPlan, ...]
    codecs: tuple[str, ...]
    inputs: tuple[TensorSpec, ...]
    predicted: Cost
    baselines: dict[str, Cost | None] = field(default_factory=dict)
    accuracy: Accuracy | None = None
    optimal: bool = True
    method: str = ""
    gap: float | None = 0.0  # proven relative gap of the objective; None: not known
    notes: tuple[str, ...] = ()
    partition_s: float = 0.0
    tier_scale: tuple[float, ...] = ()  # seconds on each tier per second on the profiling host
    # what the runtime needs besides the stages, so a running pipeline can switch to this plan alone:
    parents: dict[str, str] = field(default_factory=dict)  # node -> the node it sends to
    link_figures: tuple[dict, ...] = ()  # per link on the path: {src, dst, bandwidth_mbps, latency_ms (the fixed time priced)}
    topology_digest: str = ""  # the node structure it was made for (:func:`structure_digest`)
    # what the plan answers (explain.py): the demand, the plan next to it, baselines priced alike
    input_streams: tuple[dict, ...] = ()  # per topology source: {name, count, fps}; () when it lists none
    tier_load_fps: tuple[float, ...] = ()  # per tier: frames/s its busiest node serves at that demand
    next_best: Alternative | None = None  # the best plan next to this one that differs from it
    baseline_codecs: dict[str, tuple[str, ...]] = field(default_factory=dict)  # per baseline, per link
    baseline_breaks: dict[str, tuple[str, ...]] = field(default_factory=dict)  # constraints a baseline breaks
    exits: ExitPlan | None = None  # live early exits and what calibration predicts for them; figures are then expected ones

    # ------------------------------------------------------------------ io
    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["exits"] = self.exits.to_json() if self.exits else None
        d["format"] = FORMAT
        return d

    @classmethod
    def from_json(cls, d: dict) -> Plan:
        def spec(x):
            return TensorSpec.from_json(x)

        links = tuple(
            LinkPlan(
                link["src"],
                link["dst"],
                link["codec"],
                tuple(
                    Crossing(
                        c["name"], tuple(c["shape"]) if c["shape"] is not None else None, c["dtype"], c["raw_bytes"], c["encoded_bytes"]
                    )
                    for c in link["tensors"]
                ),
                link["bytes"],
                link["time_s"],
            )
            for link in d["links"]
        )
        return cls(
            model=d["model"],
            topology=d["topology"],
            objective=d["objective"],
            tiers=tuple(d["tiers"]),
            assignment=dict(d["assignment"]),
            stages=tuple(StageSpec.from_json(s) for s in d["stages"]),
            links=links,
            codecs=tuple(d["codecs"]),
            inputs=tuple(spec(x) for x in d["inputs"]),
            predicted=Cost.from_json(d["predicted"]),
            baselines={k: (Cost.from_json(v) if v else None) for k, v in d["baselines"].items()},
            accuracy=Accuracy(**d["accuracy"]) if d.get("accuracy") else None,
            optimal=d["optimal"],
            method=d["method"],
            notes=tuple(d["notes"]),
            partition_s=d["partition_s"],
            tier_scale=tuple(d.get("tier_scale", ())),
            gap=d.get("gap", 0.0 if d["optimal"] else None),
            parents=dict(d.get("parents", {})),
            link_figures=tuple(d.get("link_figures", ())),
            topology_digest=d.get("topology_digest", ""),
            input_streams=tuple(dict(g) for g in d.get("input_streams", ())),
            tier_load_fps=tuple(d.get("tier_load_fps", ())),
            next_best=Alternative.from_json(d["next_best"]) if d.get("next_best") else None,
            baseline_codecs={k: tuple(v) for k, v in d.get("baseline_codecs", {}).items()},
            baseline_breaks={k: tuple(v) for k, v in d.get("baseline_breaks", {}).items()},
            exits=ExitPlan.from_json(d["exits"]) if d.get("exits") else None,
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        """Read a plan written by :meth:`save` (``tierpipe partition --out``).

        Raises:
            PlanError: the file is missing, not JSON, or lacks a field; names the file and the field.
        """
        fix = "write it again with `tierpipe partition ... --out FILE`"
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PlanError(f"plan {path}: cannot be read ({type(exc).__name__}: {exc}); {fix}") from None
        if not isinstance(data, dict):
            raise PlanError(f"plan {path}: expected a JSON object, got {type(data).__name__}; {fix}")
        try:
            return cls.from_json(data)
        except KeyError as exc:
            raise PlanError(f"plan {path}: field {exc} is missing; {fix}") from None
        except (TypeError, ValueError, AttributeError, IndexError) as exc:
            raise PlanError(f"plan {path}: a field is malformed ({type(exc).__name__}: {exc}); {fix}") from None

    # ------------------------------------------------------------------ stages
    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        """Zero tensors of the model's input shapes (enough to trace or warm up)."""
        return tuple(torch.zeros(s.shape, dtype=getattr(torch, s.dtype)) for s in self.inputs)

    def build_stages(self, model: nn.Module, tiers: list[int] | None = None) -> list[Stage]:
        """Stage modules for this plan from the unmodified ``model`` (traced again; weights are the model's).

        Args:
            tiers: build only these tier indices (an actor builds just its own).

        Raises:
            StageError: the model does not have the nodes the plan names (another model or version), or the
                plan has live exits and ``model`` is not the :class:`~partition.exits.ExitModel` with their heads.
        """
        from .exits import ExitModel

        live = self.exits.live if self.exits else ()
        if live and not isinstance(model, ExitModel):
            raise StageError(
                f"plan {self.model!r} has live early exits {[e.name for e in live]}, so its stages need the exit heads: pass the "
                "ExitModel (partition.exits.with_exits, or partition.exit_train.attach) instead of the bare model"
            )
        gm, _ = trace(model.backbone if isinstance(model, ExitModel) else model, self.example_inputs())
        names = {n.name for n in gm.graph.nodes}
        missing = [n for n in self.assignment if n not in names]
        if missing:
            raise StageError(
                f"the model does not match plan {self.model!r}: ops {missing[:5]} are not in its graph; partition this model again"
            )
        last = len(self.stages) - 1
        wanted = range(len(self.stages)) if tiers is None else tiers
        out = []
        for t in wanted:
            here = [(e, model.heads[e.index]) for e in live if e.tier == t]
            out.append(exit_stage(gm, self.stages[t], here) if here and t != last else make_stage(gm, self.stages[t], t == last))
        return out

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        sizes = "/".join(str(len(s.nodes)) for s in self.stages)
        return (
            f"Plan({self.model} on {self.topology}, {self.objective}: ops {sizes} over {'/'.join(self.tiers)}, "
            f"codecs {list(self.codecs)}, latency {self.predicted.latency_s * 1e3:.1f} ms, "
            f"{self.predicted.throughput_fps:.1f} fps, bottleneck {self.predicted.bottleneck})"
        )

    def optimality(self) -> str:
        """``proven optimal``, ``within 0.8% of optimal (proven)`` or ``optimality not proven``."""
        if self.optimal:
            return "proven optimal"
        if self.gap is not None:
            return f"within {self.gap:.2%} of optimal (proven)"
        return "optimality not proven"

    def demand(self) -> Demand | None:
        """The streams' demand against the frames/s this plan sustains (None when the topology lists no
        ``sources:``).

        >>> print(plan.demand().line())                      # doctest: +SKIP
        demand 30.0 frames/s (3 streams x 10 fps); predicted capacity 48.2 frames/s: met, 1.61x headroom (bottleneck: tier gateway compute)
        """
        return demand_of(self)

    def summary_lines(self) -> list[str]:
        """What ``tierpipe partition`` prints under the tables: demand against capacity, energy per frame
        (objective ``energy``), the next-best plan, and the baselines that break a constraint."""
        return summary_lines(self)

    def tables(self):
        """rich renderables: stages, links, and our figures against the baselines."""
        return plan_tables(self)
