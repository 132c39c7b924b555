"""Policy: choose the assignment and the codec of every link, then write the Plan.

- ``latency``: exact layered min-cut (``mincut.py``) over all valid assignments of
  the DAG, for any number of tiers. Exact with pins and privacy; when a memory
  budget binds, a Lagrangian search over per-tier memory prices finds a plan that
  fits, and the plan says it is not proven optimal.
- ``throughput``: exact DP over contiguous segments of topological orders
  (``segments.py``), several orders tried, plus every other candidate we have.
- ``bytes``: least bytes on all links per frame under a latency bound (the SLO,
  else 1.5x the best latency), by a Lagrangian search of ``bytes + lambda * time``.
- codecs: ``auto`` searches link by link over raw, fp16 and int8 (with lz4/zstd),
  re-solving the cut for each, and keeps a lossy codec only within the accuracy budget.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import time
from typing import Mapping, Sequence

import numpy as np
import torch

from .baselines import baseline_assignments
from .calibration import AccuracyBudget, calibration_inputs, compression_ratios, measure_accuracy
from .codec import CODECS, is_lossless, parse_codec
from .cost import CostModel
from .errors import PartitionError
from .evaluate import Cost, Problem
from .graph import Graph
from .mincut import min_cost_assignment, propagate_bounds
from .plan import Crossing, LinkPlan, Plan
from .segments import best_contiguous, topological_orders
from .split import stage_specs
from .topology import Topology

__all__ = ["partition", "OBJECTIVES", "AUTO_CODECS"]

log = logging.getLogger(__name__)
OBJECTIVES = ("latency", "throughput", "bytes")
AUTO_CODECS = ("raw", "raw+lz4", "fp16", "fp16+zstd", "int8-channel", "int8-channel+zstd")


def _bounds(graph: Graph, topology: Topology, keep_input_on: str | None, pins: Mapping[str, str] | None):
    names = [t.name for t in topology.path]
    n, k = len(graph.nodes), len(names)
    lo = np.zeros(n, dtype=int)
    hi = np.full(n, k - 1, dtype=int)
    why_hi = [""] * n
    why_lo = [""] * n

    def tier(name: str, what: str) -> int:
        if name not in names:
            raise PartitionError(f"{what}: no tier {name!r} on the path {names}; use one of them")
        return names.index(name)

    for i in graph.inputs:
        hi[graph.index[i]] = 0
        why_hi[graph.index[i]] = "inputs are born on the source tier"
    if keep_input_on is not None:
        j = tier(keep_input_on, "keep_input_on")
        for i in graph.inputs:
            for c in graph.consumers[i]:
                v = graph.index[c]
                if j < hi[v]:
                    hi[v], why_hi[v] = j, f"keep_input_on={keep_input_on}"
    for path, tname in (pins or {}).items():
        j = tier(tname, f"pin {path!r}")
        hits = [v for v, node in enumerate(graph.nodes)
                if node.name == path or node.module == path or node.module.startswith(path + ".")]
        if not hits:
            modules = sorted({".".join(node.module.split(".")[:d]) for node in graph.nodes if node.module
                              for d in range(1, node.module.count(".") + 2)})
            close = difflib.get_close_matches(path, modules, n=3)
            raise PartitionError(f"pin {path!r}: no node or module of that path in the model"
                                 + (f"; did you mean {close}?" if close else f"; module paths look like {modules[:3]}"))
        for v in hits:
            lo[v], hi[v] = max(lo[v], j), min(hi[v], j)
            why_lo[v] = why_hi[v] = f"pin {path}={tname}"
    preds = [[graph.index[i] for i in node.inputs] for node in graph.nodes]
    succs = [[graph.index[c] for c in graph.consumers[node.name]] for node in graph.nodes]
    plo, phi = propagate_bounds(preds, succs, lo, hi)
    bad = np.flatnonzero(plo > phi)
    if len(bad):
        v = int(bad[0])
        name = graph.nodes[v].name
        own = why_lo[v] or why_hi[v] or "none of its own"
        raise PartitionError(f"constraints contradict each other at node {name!r} ({graph.nodes[v].module or 'top level'}): "
                             f"it must run on tier >= {names[plo[v]]!r} and <= {names[phi[v]]!r}, since values only move "
                             f"toward the sink (its own constraint: {own}; the rest comes from the nodes it reads or feeds). "
                             f"Drop or move one of the pins {list((pins or {}).items())}"
                             + (f" or keep_input_on={keep_input_on}" if keep_input_on else ""))
    return plo, phi


def _memory_budget(topology: Topology, enabled: bool) -> np.ndarray:
    return np.array([t.memory_mb * 1e6 if enabled else np.inf for t in topology.path])


def _fits(problem: Problem, a: np.ndarray, mem: np.ndarray) -> bool:
    return bool((problem.memory(a) <= mem).all())


def _mincut_fitting(problem: Problem, node_cost: np.ndarray, cross: np.ndarray, lo, hi, mem, key) -> tuple[np.ndarray | None, bool, np.ndarray]:
    """Min-cut; if memory does not fit, raise per-tier prices on parameters until it does.

    Returns (best fitting assignment or None, whether the first cut fitted, least-overflow memory seen).
    """
    a = min_cost_assignment(problem.preds, problem.succs, problem.is_output, node_cost, cross, lo, hi)
    used = problem.memory(a)
    if (used <= mem).all():
        return a, True, used
    best, best_key, least = None, float("inf"), used
    price = np.zeros(problem.k)
    unit = (node_cost.sum() + cross.sum() + 1e-9) / max(problem.params.sum(), 1.0)
    for _ in range(60):
        over = used > mem
        price[over] = np.maximum(price[over] * 2.0, unit * 1e-3)
        a = min_cost_assignment(problem.preds, problem.succs, problem.is_output,
                                node_cost + price[None, :] * problem.params[:, None], cross, lo, hi)
        used = problem.memory(a)
        if np.maximum(used - mem, 0).sum() < np.maximum(least - mem, 0).sum():
            least = used
        if (used <= mem).all():
            value = key(problem.evaluate(a))
            if value < best_key:
                best, best_key = a, value
            price *= 0.7          # step back to look for a cheaper fitting cut
        if best is not None and (price == 0).all():
            break
    return best, False, least


def _memory_error(problem: Problem, used: np.ndarray, mem: np.ndarray) -> PartitionError:
    j = int(np.argmax(used - mem))
    tier = problem.tiers[j]
    return PartitionError(
        f"no plan fits the memory budgets: the closest plan needs {used[j] / 1e6:.1f} MB on tier {tier.name!r}, whose "
        f"memory is {mem[j] / 1e6:.1f} MB ({(used[j] - mem[j]) / 1e6:.1f} MB over). Raise tiers[{j}].memory in "
        f"{problem.topology.source_file}, or remove pins / keep_input_on that hold nodes there")


class _Search:
    """One partitioning request: solves it for a given codec vector."""

    def __init__(self, graph, topology, cm, objective, lo, hi, mem, slo_s, orders, ratios):
        self.graph, self.topology, self.cm, self.objective = graph, topology, cm, objective
        self.lo, self.hi, self.mem, self.slo_s, self.orders, self.ratios = lo, hi, mem, slo_s, orders, ratios
        self.notes: list[str] = []
        self.optimal = True
        self.bound_s: float | None = None

    def key(self, cost: Cost) -> float:
        if self.objective == "latency":
            return cost.latency_s
        if self.objective == "throughput":
            return -cost.throughput_fps + 1e-9 * cost.latency_s
        return float(sum(cost.link_bytes)) + 1e-12 * cost.latency_s

    def solve(self, codecs: Sequence[str], extra: Sequence[np.ndarray] = ()) -> tuple[np.ndarray, Cost, Problem]:
        p = Problem(self.graph, self.topology, self.cm, codecs, self.ratios)
        lat_a, first_fit, least = _mincut_fitting(p, p.compute, p.link_time, self.lo, self.hi, self.mem, lambda c: c.latency_s)
        if lat_a is None:
            lat_a = next((a for order in topological_orders(p, self.orders)
                          for a in [best_contiguous(p, order, self.lo, self.hi, self.mem, objective="latency")[0]]
                          if a is not None and _fits(p, a, self.mem)), None)
        if lat_a is None:
            raise _memory_error(p, least, self.mem)
        if not first_fit:
            self.optimal = False
        candidates = [lat_a]
        if not first_fit:
            # a memory budget binds: the Lagrangian can miss plans that fit (knapsack), so add the
            # latency-optimal contiguous splits that respect memory segment by segment
            for order in topological_orders(p, self.orders):
                a, _ = best_contiguous(p, order, self.lo, self.hi, self.mem, objective="latency")
                if a is not None:
                    candidates.append(a)
        if self.objective == "throughput":
            for order in topological_orders(p, self.orders):
                a, _ = best_contiguous(p, order, self.lo, self.hi, self.mem)
                if a is not None:
                    candidates.append(a)
            candidates += list(extra)
        elif self.objective == "bytes":
            candidates += self._bytes_candidates(p, lat_a)
        ok = [a for a in candidates if not p.violations(a) and (a >= self.lo).all() and (a <= self.hi).all() and _fits(p, a, self.mem)]
        costs = [p.evaluate(a) for a in ok]
        if self.slo_s is not None:
            within = [(a, c) for a, c in zip(ok, costs) if c.latency_s <= self.slo_s]
            if not within:
                best = min(costs, key=lambda c: c.latency_s)
                raise PartitionError(f"latency SLO of {self.slo_s * 1e3:.1f} ms cannot be met: the fastest plan takes "
                                     f"{best.latency_s * 1e3:.1f} ms ({(best.latency_s - self.slo_s) * 1e3:.1f} ms over). "
                                     "Relax the SLO, try --codec auto, or add capacity to the bottleneck "
                                     f"({best.bottleneck})")
            ok, costs = [a for a, _ in within], [c for _, c in within]
        i = min(range(len(ok)), key=lambda i: self.key(costs[i]))
        return ok[i], costs[i], p

    def _bytes_candidates(self, p: Problem, lat_a: np.ndarray) -> list[np.ndarray]:
        bound = self.slo_s if self.slo_s is not None else 1.5 * p.evaluate(lat_a).latency_s
        self.bound_s = bound
        time_scale = p.compute.sum() + p.link_time.sum() + 1e-12
        byte_scale = p.link_bytes.sum() + 1.0
        base = byte_scale / time_scale

        def cut(lam: float) -> np.ndarray:
            return min_cost_assignment(p.preds, p.succs, p.is_output, lam * p.compute, p.link_bytes + lam * p.link_time,
                                       self.lo, self.hi)

        found = []
        low, high = -9.0, 9.0           # log10 of lambda / base
        a = cut(base * 10 ** low)
        if p.evaluate(a).latency_s <= bound:
            return [a]
        for _ in range(30):
            mid = (low + high) / 2
            a = cut(base * 10 ** mid)
            if p.evaluate(a).latency_s <= bound:
                found.append(a)
                high = mid
            else:
                low = mid
        self.optimal = False
        return found


def _codec_space(codec: str) -> list[str]:
    if codec == "auto":
        return list(AUTO_CODECS)
    if codec not in CODECS:
        raise PartitionError(f"unknown codec {codec!r}; use 'auto' or one of {', '.join(CODECS)}")
    return [codec]


def partition(graph: Graph, topology: Topology, objective: str = "latency", *, codec: str = "raw",
              keep_input_on: str | None = None, pins: Mapping[str, str] | None = None,
              latency_slo_ms: float | None = None, memory: bool = True, accuracy: AccuracyBudget | None = None,
              calibration: list[tuple] | None = None, cost_model: CostModel | None = None,
              profiles: Mapping[str, Mapping[str, float]] | None = None, model_name: str = "model",
              orders: int = 8) -> Plan:
    """Choose where every node runs and how every link is encoded.

    Args:
        graph: from :func:`partition.capture`.
        topology: tiers, links and fan-in (only tiers up to the sink are used).
        objective: ``latency`` (one frame end to end), ``throughput`` (frames/s of all
            streams), or ``bytes`` (least bytes on the links under a latency bound).
        codec: ``raw``, any codec name (``int8+zstd``...) on every link, or ``auto``.
        keep_input_on: tier the raw input must not leave (privacy).
        pins: ``{module path or node name: tier name}``.
        latency_slo_ms: the plan's latency must not exceed this.
        memory: enforce every tier's memory budget (parameters + peak live values).
        accuracy: budget for lossy codecs, checked on ``calibration`` inputs.

    Returns:
        A :class:`Plan` with the baselines computed by the same cost model.

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
    cm = cost_model or CostModel(graph, topology, profiles)
    k = len(topology.path)
    lo, hi = _bounds(graph, topology, keep_input_on, pins)
    mem = _memory_budget(topology, memory)
    budget = accuracy or AccuracyBudget()
    space = _codec_space(codec)
    example = calibration[0] if calibration else None
    calib = calibration
    ratios = {}
    if any(parse_codec(c)[1] for c in space) or any(not is_lossless(c) for c in space):
        if calib is None:
            example = _example_inputs(graph)
            calib = calibration_inputs(example, count=4)
        if any(parse_codec(c)[1] for c in space):
            ratios = compression_ratios(graph, calib[0], space)
    search = _Search(graph, topology, cm, objective, lo, hi, mem,
                     latency_slo_ms / 1e3 if latency_slo_ms is not None else None, orders, ratios)
    raw = Problem(graph, topology, cm, ["raw"] * (k - 1))
    base_assign = baseline_assignments(raw)
    extra = [a for a in base_assign.values() if (a >= lo).all() and (a <= hi).all()]

    reference = None
    accuracy_cache: dict = {}

    def accurate(a: np.ndarray, codecs: Sequence[str]):
        nonlocal reference
        if all(is_lossless(c) for c in codecs):
            return None
        key = (tuple(a), tuple(codecs))
        if key not in accuracy_cache:
            if reference is None:
                with torch.inference_mode():
                    reference = [graph.module(*x) for x in calib]
            assign = {node.name: int(t) for node, t in zip(graph.nodes, a)}
            accuracy_cache[key] = measure_accuracy(graph, assign, k, codecs, calib, reference)
        return accuracy_cache[key]

    vec = [space[0]] * (k - 1)
    best_a, best_cost, best_p = search.solve(vec, extra)
    best_acc = accurate(best_a, vec)
    if codec == "auto":
        for _ in range(2):
            improved = False
            for j in range(k - 1):
                for c in space:
                    if c == vec[j]:
                        continue
                    trial = vec[:j] + [c] + vec[j + 1:]
                    try:
                        a, cost, p = search.solve(trial, extra)
                    except PartitionError:
                        continue
                    if search.key(cost) >= search.key(best_cost) - 1e-12:
                        continue
                    acc = accurate(a, trial)
                    if acc is not None and not acc.within(budget):
                        continue
                    vec, best_a, best_cost, best_p, best_acc, improved = trial, a, cost, p, acc, True
            if not improved:
                break
    elif best_acc is not None and not best_acc.within(budget):
        search.notes.append(f"codec {codec} exceeds the accuracy budget: max rel error {best_acc.max_rel_error:.3g}, "
                            f"top-1 agreement {best_acc.top1_agreement:.3f}")

    baselines = {}
    for name, a in base_assign.items():
        cost = raw.evaluate(a)
        baselines[name] = cost
        if not _fits(raw, a, mem):
            search.notes.append(f"baseline '{name}' does not fit the memory budgets")
    notes = list(graph.notes) + list(search.notes)
    method = {"latency": "layered s-t min-cut (exact over all DAG assignments)",
              "throughput": f"DP over contiguous segments of {orders} topological orders + min-cut and baseline candidates",
              "bytes": "min-cut on bytes + lambda * time, lambda searched for the latency bound"}[objective]
    if objective == "bytes":
        notes.append(f"latency bound {search.bound_s * 1e3:.1f} ms" if search.bound_s else "latency bound met by the least-bytes cut")
    if not search.optimal:
        notes.append("a memory budget or latency bound binds: the plan fits, but optimality is not proven")
    plan = _make_plan(graph, topology, model_name, objective, best_a, vec, best_cost, best_p, baselines, best_acc,
                      objective == "latency" and search.optimal, method, notes, time.perf_counter() - start)
    return dataclasses.replace(plan, tier_scale=tuple(float(x) for x in cm.scale))


def _example_inputs(graph: Graph) -> tuple:
    """The inputs the graph was captured with; else random floats and zeros of the input specs."""
    if graph.example_inputs is not None:
        return tuple(graph.example_inputs)
    out = []
    for name in graph.inputs:
        spec = graph[name].outputs[0]
        out.append(torch.randn(spec.shape, dtype=getattr(torch, spec.dtype)) if "float" in spec.dtype
                   else torch.zeros(spec.shape, dtype=getattr(torch, spec.dtype)))
    return tuple(out)


def _make_plan(graph, topology, model_name, objective, a, codecs, cost, problem: Problem, baselines, acc, optimal,
               method, notes, seconds) -> Plan:
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
            tensors.append(Crossing(node.name, spec.shape if spec else None, spec.dtype if spec else "tuple",
                                    node.bytes_out, int(problem.link_bytes[v, j])))
        links.append(LinkPlan(names[j], names[j + 1], codecs[j], tuple(tensors), cost.link_bytes[j], cost.link_s[j]))
    inputs = tuple(graph[i].outputs[0] for i in graph.inputs)
    return Plan(model=model_name, topology=topology.name, objective=objective, tiers=tuple(names),
                assignment={n: names[t] for n, t in assign.items()}, stages=tuple(specs), links=tuple(links),
                codecs=tuple(codecs), inputs=inputs, predicted=cost, baselines=baselines, accuracy=acc,
                optimal=optimal, method=method, notes=tuple(notes), partition_s=seconds)
