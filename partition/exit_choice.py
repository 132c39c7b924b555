"""Choosing early exits with the cut: which exits are live, their thresholds and tiers, and the cut itself.

The expected cost of a frame depends on the exits only through the tier of each live exit and the
calibration's outcome of its thresholds: the share of frames leaving at each tier (``reach``) and the
heads' and result frames' constants (:class:`~partition.pricing.ExitTerms`). So the search enumerates
*classes*: for each exit, off or (threshold, tier), tiers non-decreasing along the model (exits lie
on one path, so any valid assignment puts them so). Within a class the exit nodes are pinned to their
tiers and every figure is a fixed weighting of the plain one, of exactly the form the solvers already
handle (per-tier compute columns, per-link crossing costs, constants per tier and link), so the
class's optimum is what the exact solver (or, where exact, the fast path) finds. Every pair of an
assignment and a live set falls in exactly one class (an exit on the sink tier saves nothing and is
the class with it off), so the best class optimum is the optimum over exits and cut together.
Classes whose calibration outcome breaks the accuracy budget are never solved.

Classes are few: with ``E`` exits, ``T`` thresholds and ``k`` tiers at most ``(1 + T (k - 1))^E``
(121 for two exits, five thresholds and three tiers), each a solve of the plain problem's size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import ExitError, PartitionError
from .exit_calib import DEFAULT_RATES, ExitBudget, ExitCalibration
from .exit_stage import LiveExit
from .mincut import propagate_bounds
from .pricing import ExitTerms, Problem
from .solution import Request, ranking_key

__all__ = ["ExitCandidates", "ExitPlan", "exit_candidates", "configurations", "exit_terms", "pinned", "choose_exits"]

RESULT_ENVELOPE_BYTES = 96  # a result frame's msgpack envelope (source, seq, times, exit index), measured on the wire


@dataclass(frozen=True)
class ExitCandidates:
    """What the partitioner needs to choose exits: plain data (no modules)."""

    names: tuple[str, ...]
    nodes: tuple[str, ...]
    rules: tuple[str, ...]
    calibration: ExitCalibration
    budget: ExitBudget
    head_host_s: tuple[float, ...]  # each head's time per frame on the profiling host
    head_param_bytes: tuple[int, ...]
    result_bytes: int  # one exited frame on the wire: envelope + answer
    thresholds: tuple[tuple[float, ...], ...]  # candidates per exit

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["calibration"] = self.calibration.to_json()
        d["budget"] = {"min_agreement": self.budget.min_agreement, "max_error": self.budget.max_error}
        return d

    @classmethod
    def from_json(cls, d: Mapping) -> ExitCandidates:
        return cls(
            tuple(d["names"]),
            tuple(d["nodes"]),
            tuple(d["rules"]),
            ExitCalibration.from_json(d["calibration"]),
            ExitBudget(**d["budget"]),
            tuple(float(x) for x in d["head_host_s"]),
            tuple(int(x) for x in d["head_param_bytes"]),
            int(d["result_bytes"]),
            tuple(tuple(float(t) for t in ts) for ts in d["thresholds"]),
        )


@dataclass(frozen=True)
class ExitPlan:
    """The exits a plan turns on and what the calibration predicts for them.

    ``rate_by_tier``: share of frames answered on each tier (the sink's: those that go all the way);
    ``kind``: ``agreement`` (share of frames whose answer has the full model's argmax) or ``error``
    (mean absolute difference from the full model); ``bound``: the budget on it; ``quality``: its value;
    ``candidates``: what the exits were chosen from (calibration, budget, thresholds), so that a re-plan
    of the running pipeline chooses them again (:class:`~partition.replan.Replanner`).
    """

    live: tuple[LiveExit, ...]
    kind: str
    bound: float
    quality: float
    rate_by_tier: tuple[float, ...]
    result_bytes: int
    link_bytes_without: tuple[int, ...]  # the same cut and codecs without exits, per link
    classes_solved: int = 0
    candidates: ExitCandidates | None = None

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["live"] = [e.to_json() for e in self.live]
        d["candidates"] = self.candidates.to_json() if self.candidates else None
        return d

    @classmethod
    def from_json(cls, d: Mapping) -> ExitPlan:
        return cls(
            tuple(LiveExit.from_json(e) for e in d["live"]),
            d["kind"],
            float(d["bound"]),
            float(d["quality"]),
            tuple(d["rate_by_tier"]),
            int(d["result_bytes"]),
            tuple(d["link_bytes_without"]),
            int(d.get("classes_solved", 0)),
            ExitCandidates.from_json(d["candidates"]) if d.get("candidates") else None,
        )

    def thresholds(self) -> dict[str, float]:
        return {e.name: e.threshold for e in self.live}


def exit_candidates(
    model,
    calibration: ExitCalibration,
    budget: ExitBudget,
    rates: Sequence[float] = DEFAULT_RATES,
    head_host_s: Sequence[float] | None = None,
) -> ExitCandidates:
    """The candidates of an :class:`~partition.exits.ExitModel` (heads priced from their FLOPs unless given)."""
    import torch

    from .tracer import analytic_time_s

    if budget.kind != calibration.kind:
        raise ExitError(
            f"the exit budget is an {budget.kind} bound but the exits' rules ({', '.join(calibration.rules)}) are judged by "
            f"{calibration.kind}; give {'max_error' if calibration.kind == 'error' else 'min_agreement'} instead"
        )
    full, taps = model.taps(model.example_inputs)
    params = tuple(sum(p.numel() * p.element_size() for p in head.parameters()) for head in model.heads)
    if head_host_s is None:
        from torch.utils.flop_counter import FlopCounterMode

        times = []
        for head, tap, nbytes in zip(model.heads, taps, params):
            with FlopCounterMode(display=False) as counter, torch.inference_mode():
                head(tap[:1])
            times.append(analytic_time_s(counter.get_total_flops(), nbytes + tap[:1].numel() * tap.element_size()))
        head_host_s = times
    answer_bytes = full[:1].numel() * full.element_size()
    return ExitCandidates(
        tuple(e.name for e in model.exits),
        tuple(e.node for e in model.exits),
        tuple(e.rule for e in model.exits),
        calibration,
        budget,
        tuple(float(t) for t in head_host_s),
        params,
        RESULT_ENVELOPE_BYTES + answer_bytes,
        tuple(tuple(calibration.thresholds(e, rates)) for e in range(len(model.exits))),
    )


# one class: per live exit (exit index, threshold, tier), in the model's order
Config = tuple[tuple[int, float, int], ...]


def configurations(c: ExitCandidates, k: int) -> Iterator[Config]:
    """Every class: each exit off or (threshold, tier below the sink), tiers non-decreasing along the model."""

    def rec(e: int, low: int, chosen: Config):
        if e == len(c.names):
            yield chosen
            return
        yield from rec(e + 1, low, chosen)
        for t in range(low, k - 1):
            for thr in c.thresholds[e]:
                yield from rec(e + 1, t, (*chosen, (e, thr, t)))

    yield from rec(0, 0, ())


def exit_terms(c: ExitCandidates, cfg: Config, plain: Problem) -> tuple[ExitTerms, float, tuple[float, ...]]:
    """The expected-cost terms of class ``cfg`` on ``plain``'s topology and cost model, its calibrated
    quality and the share of frames answered on each tier."""
    k = plain.k
    rates, quality = c.calibration.outcome({e: thr for e, thr, _ in cfg})
    answered = np.zeros(k)
    for e, _, t in cfg:
        answered[t] += rates[e]
    reach = np.concatenate([[1.0], 1.0 - np.cumsum(answered)[:-1]])
    reach = np.clip(reach, 0.0, 1.0)
    answered[k - 1] = reach[k - 1]
    scale = plain.cost.scale
    stage_extra = np.zeros(k)
    mem_extra = np.zeros(k)
    for e, _, t in cfg:  # a tier's heads run on every frame that reaches it
        stage_extra[t] += reach[t] * c.head_host_s[e] * scale[t]
        mem_extra[t] += c.head_param_bytes[e]
    link_extra_bytes = np.array([(1.0 - reach[j + 1]) * c.result_bytes for j in range(k - 1)])
    link_extra_s = link_extra_bytes / plain.bw_Bps if k > 1 else np.zeros(0)
    topo = plain.topology
    energy = stage_extra[0] * topo.path[0].power_w
    if k > 1:
        energy += link_extra_bytes[0] * topo.links[0].tx_energy_nj_per_byte * 1e-9
    terms = ExitTerms(
        tuple(float(x) for x in reach),
        tuple(float(x) for x in stage_extra),
        tuple(float(x) for x in link_extra_bytes),
        tuple(float(x) for x in link_extra_s),
        float(energy),
        tuple(float(x) for x in mem_extra),
    )
    return terms, quality, tuple(float(x) for x in answered)


def pinned(plain: Problem, req: Request, c: ExitCandidates, cfg: Config) -> Request | None:
    """``req`` with every live exit's node on its tier (bounds propagated), or None when that contradicts it."""
    lo, hi = req.lo.copy(), req.hi.copy()
    for e, _, t in cfg:
        v = plain.graph.index[c.nodes[e]]
        lo[v], hi[v] = max(lo[v], t), min(hi[v], t)
    lo, hi = propagate_bounds(plain.preds, plain.succs, lo, hi)
    if (lo > hi).any():
        return None
    return dataclasses.replace(req, lo=lo, hi=hi)


def choose_exits(
    c: ExitCandidates,
    plain: Problem,
    req: Request,
    solve: Callable[[ExitTerms | None, Request], tuple],
):
    """The best class and its solution: ``((solution, accuracy), notes, terms, ExitPlan)``.

    Args:
        plain: the problem without exits (codecs raw; its topology, cost model and bandwidths serve).
        solve: ``solve(terms, request) -> ((solution, accuracy), notes)`` for one class; raises
            :class:`PartitionError` when the class has no plan.

    Raises:
        PartitionError: no class has a plan (the message of the no-exit class says why).
    """
    best, tried, skipped = None, 0, 0
    first_error: PartitionError | None = None
    for cfg in configurations(c, plain.k):
        terms, quality, answered = exit_terms(c, cfg, plain) if cfg else (None, _no_exit_quality(c), ())
        if not c.budget.within(quality):
            skipped += 1
            continue
        r = pinned(plain, req, c, cfg)
        if r is None:
            continue
        tried += 1
        try:
            found, notes = solve(terms, r)
        except PartitionError as exc:
            first_error = first_error or exc
            continue
        key = ranking_key(req.objective, found[0].cost)
        if best is None or key < best[0] - 1e-12 * max(abs(key), 1e-30):
            best = (key, found, notes, terms, cfg, quality, answered)
    if best is None:
        raise first_error or PartitionError("no plan meets the constraints with or without exits")
    _, found, notes, terms, cfg, quality, answered = best
    sol = found[0]
    without = plain.with_codecs(sol.codecs).evaluate(sol.assignment).link_bytes if plain.k > 1 else ()
    live = tuple(LiveExit(e, c.names[e], c.nodes[e], t, c.rules[e], float(thr)) for e, thr, t in cfg)
    if not answered:
        answered = (0.0,) * (plain.k - 1) + (1.0,)
    plan = ExitPlan(live, c.budget.kind, c.budget.bound, float(quality), answered, c.result_bytes, tuple(without), tried, c)
    notes = list(notes) + [
        f"early exits: {tried} classes (live exits x thresholds x tiers) solved, {skipped} left out by the {c.budget.kind} budget "
        f"{c.budget.bound:g}; live: {', '.join(f'{e.name}@{e.threshold:.3g} on tier {e.tier}' for e in live) or 'none'}"
    ]
    return found, notes, terms, plan


def _no_exit_quality(c: ExitCandidates) -> float:
    return 1.0 if c.calibration.kind == "agreement" else 0.0
