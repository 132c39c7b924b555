"""Policy: choose the assignment and the codec of every link, then write the Plan.

The pieces, each with plain inputs and outputs:
- ``constraints.py``: pins, ``keep_input_on``, memory and the SLO as a :class:`Request`.
- ``fast.py``: min-cut (latency, exact without a binding memory budget), DP over contiguous
  segments (throughput, exact on chains), a Lagrangian search (bytes under a latency bound).
- ``milp.py``: the exact solver (HiGHS), every objective and constraint, codecs included.
- ``codec_search.py``: the codec of every link within the accuracy budget.

``solver="fast"`` uses the fast paths only; ``"exact"`` the MILP with the fast plan as its start,
until it proves optimality; ``"auto"`` (default) the MILP within ``time_budget_s`` and the fast
plan as start and fallback. Every plan says how it was found and its proven gap.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from .baselines import baseline_assignments, baseline_codecs, constraint_breaks
from .calibration import AccuracyBudget, calibration_inputs, compression_ratios, measure_accuracy
from .codec import CODECS, is_lossless, parse_codec
from .codec_search import coordinate_search, joint_search
from .constraints import make_request
from .cost import CostModel
from .errors import PartitionError
from .exit_choice import ExitCandidates, choose_exits
from .explain import next_best
from .fast import fast_solve, fits
from .graph import Graph
from .milp import EXACT_METHOD, exact_solve
from .plan import Crossing, LinkPlan, Plan, deployment_facts
from .pricing import ExitTerms, Problem
from .solution import Solution, ranking_key
from .split import stage_specs
from .topology import Topology

__all__ = ["partition", "OBJECTIVES", "AUTO_CODECS", "SOLVERS"]

log = logging.getLogger(__name__)
OBJECTIVES = ("latency", "throughput", "bytes", "energy")
SOLVERS = ("auto", "exact", "fast")
AUTO_CODECS = ("raw", "raw+lz4", "fp16", "fp16+zstd", "int8-channel", "int8-channel+zstd")


def _codec_space(codec: str) -> list[str]:
    if codec == "auto":
        return list(AUTO_CODECS)
    if codec not in CODECS:
        raise PartitionError(f"unknown codec {codec!r}; use 'auto' or one of {', '.join(CODECS)}")
    return [codec]


def partition(
    graph: Graph,
    topology: Topology,
    objective: str = "latency",
    *,
    codec: str = "raw",
    keep_input_on: str | None = None,
    pins: Mapping[str, str] | None = None,
    latency_slo_ms: float | None = None,
    memory: bool = True,
    accuracy: AccuracyBudget | None = None,
    calibration: list[tuple] | None = None,
    cost_model: CostModel | None = None,
    profiles: Mapping[str, Mapping[str, float]] | None = None,
    model_name: str = "model",
    orders: int = 8,
    solver: str = "auto",
    time_budget_s: float = 10.0,
    not_before: Mapping[str, str] | None = None,
    exits: ExitCandidates | None = None,
) -> Plan:
    """Choose where every node runs and how every link is encoded.

    Args:
        graph: from :func:`partition.capture`.
        topology: tiers, links and fan-in (only tiers up to the sink are used).
        objective: ``latency`` (one frame end to end), ``throughput`` (frames/s of all
            streams), ``bytes`` (least bytes on the links under a latency bound) or ``energy``
            (least device joules per frame: compute x ``power`` + bytes sent x ``tx_energy``).
        codec: ``raw``, any codec name (``int8+zstd``...) on every link, or ``auto``.
        keep_input_on: tier the raw input must not leave (privacy).
        pins: ``{module path or node name: tier name}``.
        not_before: ``{module path or node name: tier name}``: runs on that tier or one nearer the sink.
        latency_slo_ms: the plan's latency must not exceed this.
        memory: enforce every tier's memory budget (parameters, each storage once, + every
            value the tier produces or receives for a frame: a bound of the peak under any order).
        accuracy: budget for lossy codecs, checked on ``calibration`` inputs.
        exits: early exits to choose with the cut (:func:`partition.exit_choice.exit_candidates`):
            which are live, their thresholds and tiers, within their accuracy budget; every figure of
            the plan is then the expected one per frame, and ``plan.exits`` says what was chosen.
        solver: ``auto`` (exact within ``time_budget_s``, else the best plan found and its proven
            gap), ``exact`` (no time limit) or ``fast`` (min-cut / DP only).

    Returns:
        A :class:`Plan` with the baselines computed by the same cost model and codec choice (and the
        constraints each breaks), the best plan next to it (``plan.next_best``) and the streams'
        demand (``plan.demand()``); ``plan.optimal`` and ``plan.gap`` say what is proven.

    Raises:
        PartitionError: an unknown objective/codec/tier/pin, or no plan meets the constraints
            (the message says which and by how much).

    >>> from partition import capture, Topology
    >>> from partition.zoo import get_model
    >>> plan = partition(capture(*get_model("resnet18")), Topology.load("smart_city"))
    >>> plan.predicted.latency_s <= min(c.latency_s for c in plan.baselines.values())
    True
    """
    start = time.perf_counter()
    if objective not in OBJECTIVES:
        raise PartitionError(f"unknown objective {objective!r}; use one of {OBJECTIVES}")
    if solver not in SOLVERS:
        raise PartitionError(f"unknown solver {solver!r}; use one of {SOLVERS}")
    cm = cost_model or CostModel(graph, topology, profiles)
    k = len(topology.path)
    req = make_request(graph, topology, objective, keep_input_on, pins, latency_slo_ms, memory, orders, not_before)
    space = _codec_space(codec)
    calib, ratios = calibrate_codecs(graph, space, calibration)
    raw = Problem(graph, topology, cm, ["raw"] * (k - 1))
    base_assign = baseline_assignments(raw)
    extra = [a for a in base_assign.values() if (a >= req.lo).all() and (a <= req.hi).all()]
    accuracy_at = _accuracy_check(graph, k, calib)

    def accuracy_of(sol: Solution):
        return accuracy_at(sol.assignment, sol.codecs)

    budget = accuracy or AccuracyBudget()
    problems: dict[tuple, Problem] = {}

    def problem_with(terms: ExitTerms | None):
        def problem(codecs) -> Problem:
            key = (tuple(codecs), terms)
            if key not in problems:
                problems[key] = Problem(graph, topology, cm, list(codecs), ratios, terms)
            return problems[key]

        return problem

    def solve(problem, req):
        """The best (solution, accuracy) for one problem family and request, and the notes."""
        fast, fast_error = None, None
        try:
            fast = coordinate_search(
                lambda vec: fast_solve(problem(vec), req, extra), space, k - 1, req.objective, accuracy_of, budget, search=codec == "auto"
            )
        except PartitionError as e:
            if solver == "fast":
                raise
            fast_error = e
        best, notes = fast, []
        if solver != "fast" and not (fast is not None and fast[0].optimal and codec != "auto"):
            limit = time_budget_s if solver == "auto" else None
            incumbent = fast[0] if fast else None
            by_codec = {c: problem([c] * (k - 1)) for c in space}
            exact, notes = joint_search(
                lambda allowed: exact_solve(
                    problem(incumbent.codecs if incumbent else [space[0]] * (k - 1)), req, by_codec, allowed, incumbent, limit
                ),
                space,
                k - 1,
                accuracy_of,
                budget,
            )
            if exact is None and fast is None:
                raise fast_error or PartitionError("no plan meets the constraints")
            if exact is not None:
                # the better of the two (the fast plan can tie, or win when the solver ran out of time),
                # with the gap the solver proved
                candidates = [exact] + ([(fast[0].proven_by(req.objective, exact[0].lower_bound), fast[1])] if fast else [])
                best = min(candidates, key=lambda c: ranking_key(req.objective, c[0].cost))
        return best, notes

    plain = problem_with(None)
    exit_plan = None
    if exits is None:
        problem = plain
        (sol, acc), notes = solve(problem, req)
    else:
        if objective == "bytes" and req.slo_s is None:  # one latency bound for every class: 1.5 x the fastest plan without exits
            (fastest, _), _ = solve(plain, dataclasses.replace(req, objective="latency"))
            req = dataclasses.replace(req, slo_s=1.5 * fastest.cost.latency_s)
        priced = plain(["raw"] * (k - 1))  # with the measured compressor ratios
        (sol, acc), notes, terms, exit_plan = choose_exits(exits, priced, req, lambda terms, r: solve(problem_with(terms), r))
        problem = problem_with(terms)
    if codec != "auto" and acc is not None and not acc.within(budget):
        notes.append(
            f"codec {codec} exceeds the accuracy budget: max rel error {acc.max_rel_error:.3g}, top-1 agreement {acc.top1_agreement:.3f}"
        )

    # baselines priced like the plan: its codec, or under auto the best codec of the space for their
    # crossings (lossless where a lossy choice breaks the accuracy budget), with the constraints they break
    def acceptable(a, codecs) -> bool:
        acc = accuracy_at(a, codecs)
        return acc is None or acc.within(budget)

    pinned = (
        req if keep_input_on is None else make_request(graph, topology, objective, None, pins, latency_slo_ms, memory, orders, not_before)
    )
    baselines, baseline_vecs, breaks = {}, {}, {}
    for name, a in base_assign.items():
        vec = baseline_codecs(plain, a, k - 1, space, objective, acceptable if codec == "auto" else None)
        baselines[name], baseline_vecs[name] = plain(vec).evaluate(a), vec
        why = constraint_breaks(raw, a, baselines[name], req, pinned, keep_input_on)
        if why:
            breaks[name] = why
        if not fits(raw, a, req.mem):
            notes.append(f"baseline '{name}' does not fit the memory budgets")
    alt, better = next_best(problem(sol.codecs), req, sol.assignment, sol.bound_s)
    if better is not None:
        notes.append(f"a plan next to the solver's is better ({better.change}); the solver stopped short of optimal")
    notes = list(graph.notes) + list(sol.notes) + notes
    if objective == "bytes":
        notes.append(f"latency bound {sol.bound_s * 1e3:.1f} ms" if sol.bound_s else "latency bound met by the least-bytes cut")
    method = sol.method + ("" if sol.method == EXACT_METHOD else f" ({orders} orders)" if objective == "throughput" else "")
    plan = _make_plan(
        graph,
        topology,
        model_name,
        objective,
        sol.assignment,
        list(sol.codecs),
        sol.cost,
        problem(sol.codecs),
        baselines,
        acc,
        sol.optimal,
        method,
        notes,
        time.perf_counter() - start,
    )
    return dataclasses.replace(
        plan,
        tier_scale=tuple(float(x) for x in cm.scale),
        gap=sol.gap,
        next_best=alt,
        baseline_codecs=baseline_vecs,
        baseline_breaks=breaks,
        exits=exit_plan,
    )


def calibrate_codecs(graph: Graph, space: Sequence[str], calibration: list[tuple] | None = None):
    """Calibration inputs (when a lossy or compressing codec is in the space) and compressor ratios."""
    calib, ratios = calibration, {}
    compressing = any(parse_codec(c)[1] for c in space)
    if compressing or any(not is_lossless(c) for c in space):
        if calib is None:
            calib = calibration_inputs(_example_inputs(graph), count=4)
        if compressing:
            ratios = compression_ratios(graph, calib[0], space)
    return calib, ratios


def _accuracy_check(graph: Graph, k: int, calib):
    """``check(assignment, codecs)``: the accuracy of the lossy codecs on ``calib`` (cached), None when all
    are lossless."""
    cache: dict = {}
    reference: list = []

    def check(assignment, codecs):
        if all(is_lossless(c) for c in codecs):
            return None
        key = (tuple(int(t) for t in assignment), tuple(codecs))
        if key not in cache:
            if not reference:
                with torch.inference_mode():
                    reference.extend(graph.module(*x) for x in calib)
            assign = {node.name: int(t) for node, t in zip(graph.nodes, assignment)}
            cache[key] = measure_accuracy(graph, assign, k, list(codecs), calib, reference)
        return cache[key]

    return check


def _example_inputs(graph: Graph) -> tuple:
    """The inputs the graph was captured with; else random floats and zeros of the input specs."""
    if graph.example_inputs is not None:
        return tuple(graph.example_inputs)
    out = []
    for name in graph.inputs:
        spec = graph[name].outputs[0]
        out.append(
            torch.randn(spec.shape, dtype=getattr(torch, spec.dtype))
            if "float" in spec.dtype
            else torch.zeros(spec.shape, dtype=getattr(torch, spec.dtype))
        )
    return tuple(out)


def _make_plan(
    graph, topology, model_name, objective, a, codecs, cost, problem: Problem, baselines, acc, optimal, method, notes, seconds
) -> Plan:
    names = [t.name for t in topology.path]
    assign = {node.name: int(t) for node, t in zip(graph.nodes, a)}
    specs = stage_specs(graph, assign, names)
    cross = problem.crossing(a)
    links = []
    for j in range(len(names) - 1):
        tensors = []
        for v in np.flatnonzero(cross[:, j]):
            node = graph.nodes[v]
            spec = node.outputs[0] if len(node.outputs) == 1 else None
            tensors.append(
                Crossing(
                    node.name, spec.shape if spec else None, spec.dtype if spec else "tuple", node.bytes_out, int(problem.link_bytes[v, j])
                )
            )
        links.append(LinkPlan(names[j], names[j + 1], codecs[j], tuple(tensors), cost.link_bytes[j], cost.link_s[j]))
    inputs = tuple(graph[i].outputs[0] for i in graph.inputs)
    return Plan(
        model=model_name,
        topology=topology.name,
        objective=objective,
        tiers=tuple(names),
        assignment={n: names[t] for n, t in assign.items()},
        stages=tuple(specs),
        links=tuple(links),
        codecs=tuple(codecs),
        inputs=inputs,
        predicted=cost,
        baselines=baselines,
        accuracy=acc,
        optimal=optimal,
        method=method,
        notes=tuple(notes),
        partition_s=seconds,
        **deployment_facts(topology, [problem.cost.link_latency_s(j) for j in range(len(names) - 1)]),
    )
