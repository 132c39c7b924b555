"""The baselines as plans that can be run: all on the device, all on the sink, Neurosurgeon, DADS.

``partition()`` prices them beside its plan (``plan.baselines``); these are the same assignments,
as :class:`Plan` objects a ``Pipeline`` runs, so that a lab can measure whether the predicted
ranking holds. Raw codecs (the baselines' own papers send tensors as they are).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from .baselines import baseline_assignments
from .cost import CostModel
from .graph import Graph
from .optimize import _make_plan
from .plan import Plan
from .pricing import Problem
from .topology import Topology

__all__ = ["baseline_plans", "tier_plans", "probe_plans"]


def baseline_plans(
    graph: Graph,
    topology: Topology,
    objective: str = "latency",
    profiles: Mapping[str, Mapping[str, float]] | None = None,
    model_name: str = "model",
) -> dict[str, Plan]:
    """``{baseline name: Plan}`` priced with the same cost model as ``partition(..., profiles=profiles)``.

    >>> from partition import Topology, capture
    >>> from partition.zoo import get_model
    >>> plans = baseline_plans(capture(*get_model("resnet18"), timing="analytic"), Topology.load("three_tier"))
    >>> sorted(plans)
    ['all on device', 'all on edge', 'dads (2-tier min-cut)', 'neurosurgeon (1 cut, 2 tiers)']
    >>> [len(s.nodes) for s in plans["all on edge"].stages][:2]     # nothing but the input on the device
    [0, 0]
    """
    cm = CostModel(graph, topology, profiles)
    raw = Problem(graph, topology, cm)
    return _plans(graph, topology, objective, cm, raw, baseline_assignments(raw), model_name)


def tier_plans(
    graph: Graph, topology: Topology, profiles: Mapping | None = None, model_name: str = "model", objective: str = "latency"
) -> dict[str, Plan]:
    """``{tier name: Plan}``: the whole model on one tier (the input still enters on the first), for every tier of the
    path: what ``tierpipe profile --address`` runs to time the whole model as one stage on each tier.

    >>> from partition import Topology, capture
    >>> from partition.zoo import get_model
    >>> plans = tier_plans(capture(*get_model("resnet18"), timing="analytic"), Topology.load("three_tier"))
    >>> {name: [len(s.nodes) for s in p.stages] for name, p in plans.items()}
    {'device': [74, 0, 0], 'gateway': [0, 74, 0], 'edge': [0, 0, 74]}
    """
    cm = CostModel(graph, topology, profiles)
    raw = Problem(graph, topology, cm)
    assignments = {t.name: np.where(raw.is_input, 0, j) for j, t in enumerate(topology.path)}
    return _plans(graph, topology, objective, cm, raw, assignments, model_name)


def probe_plans(
    graph: Graph, topology: Topology, profiles: Mapping | None = None, model_name: str = "model", objective: str = "latency"
) -> dict[str, Plan]:
    """``{tier name: Plan}``: a small stage on each tier, the second point of its calibration beside
    :func:`tier_plans`' whole model: on a tier before the last, the model's first op (the rest on the last
    tier); on the last tier, the outputs and what follows them (the rest on the tier before). Empty for a
    path of one tier.

    >>> from partition import Topology, capture
    >>> from partition.zoo import get_model
    >>> plans = probe_plans(capture(*get_model("resnet18"), timing="analytic"), Topology.load("three_tier"))
    >>> {name: [len(s.nodes) for s in p.stages] for name, p in plans.items()}
    {'device': [1, 0, 73], 'gateway': [0, 1, 73], 'edge': [0, 73, 1]}
    """
    k = len(topology.path)
    if k < 2:
        return {}
    cm = CostModel(graph, topology, profiles)
    raw = Problem(graph, topology, cm)
    ops = [i for i in range(len(graph.nodes)) if not raw.is_input[i]]
    tail = {graph.index[o] for o in graph.outputs}
    for i in ops:  # what follows an output goes with it: a later tier never feeds an earlier one
        if any(graph.index[p] in tail for p in graph.nodes[i].inputs):
            tail.add(i)
    assignments = {}
    for j, tier in enumerate(topology.path):
        if j < k - 1:
            a = np.where(raw.is_input, 0, k - 1)
            a[ops[0]] = j
        else:
            a = np.where(raw.is_input, 0, k - 2)
            a[sorted(tail)] = k - 1
        assignments[tier.name] = a
    return _plans(graph, topology, objective, cm, raw, assignments, model_name)


def _plans(graph, topology, objective, cm, raw, assignments: dict, model_name: str) -> dict[str, Plan]:
    k = len(topology.path)
    out = {}
    for name, a in assignments.items():
        plan = _make_plan(
            graph, topology, model_name, objective, a, ["raw"] * (k - 1), raw.evaluate(a), raw, {}, None, False, name, [], 0.0
        )
        out[name] = dataclasses.replace(plan, tier_scale=tuple(float(x) for x in cm.scale))
    return out
