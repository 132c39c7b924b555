"""Re-planning from measured figures: when a new plan is worth a switch.

The runtime measures each link's bandwidth and how much slower (or faster) each tier runs
than the plan predicted (:class:`Measured`); never the conditions file. :class:`Replanner`
partitions again with those figures (the topology's links and speeds overridden, codecs
searched again: on a slow link int8 at the cut or more layers on the device may win) and
proposes the new plan only when it is predicted to be clearly better than the running plan
under the same measured figures (``min_gain``), and not sooner than ``hold_s`` after the last
switch, so a noisy link cannot make plans flap.

Early exits are chosen again with the cut: from the candidates given (``exits=``) or, by default,
those the running plan was chosen from (``plan.exits.candidates``), within the same accuracy
budget; the running plan is priced with its live exits. A proposal says what it changes about
exits (:func:`exits_change`), and, should the running plan's live exits not be choosable again
(a plan made without candidates), that the new plan drops them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .cost import CostModel
from .exit_choice import ExitCandidates, ExitPlan, exit_terms
from .graph import Graph
from .optimize import calibrate_codecs, partition
from .plan import Plan
from .pricing import Problem
from .solution import objective_value
from .topology import Topology

__all__ = ["Measured", "Proposal", "Replanner", "measured_topology", "measured_profiles", "exits_change"]


@dataclass(frozen=True)
class Measured:
    """What the runtime observed, per link on the path and per tier (None: no measurement yet)."""

    bandwidth_mbps: tuple[float | None, ...]
    slowdown: tuple[float | None, ...] = ()  # measured stage time / the plan's predicted time

    def describe(self, topo: Topology) -> str:
        parts = [
            f"{topo.path[j].name}->{topo.path[j + 1].name} {bw:.3g} Mbit/s" for j, bw in enumerate(self.bandwidth_mbps) if bw is not None
        ]
        parts += [f"{topo.path[t].name} x{s:.2f} slower" for t, s in enumerate(self.slowdown) if s is not None and s != 1.0]
        return ", ".join(parts) or "as planned"


def measured_topology(topo: Topology, measured: Measured) -> Topology:
    """``topo`` with its links' bandwidths and its tiers' speeds replaced by the measured figures."""
    links = list(topo.links)
    for j, bw in enumerate(measured.bandwidth_mbps):
        if bw is not None:
            links[j] = links[j].model_copy(update={"bandwidth_mbps": float(bw)})
    tiers = list(topo.tiers)
    for t, slow in enumerate(measured.slowdown):
        if slow is not None and slow > 0:
            tier = tiers[t]
            update = {"speed": tier.speed / slow} if tier.speed else {"gflops": tier.gflops / slow}
            tiers[t] = tier.model_copy(update=update)
    return topo.model_copy(update={"links": links, "tiers": tiers})


def measured_profiles(profiles: Mapping | None, topo: Topology, measured: Measured) -> Mapping | None:
    """Profiled op times scaled by each tier's measured slowdown (profiles override the speeds
    ``measured_topology`` changes, so a tier found slower must be slower in its profile too); links as profiled.

    >>> from partition import Topology
    >>> t = Topology.load("three_tier")
    >>> measured_profiles({"device": {"conv": 0.5}, "_links": {}}, t, Measured((None, None), (2.0, None, None)))
    {'device': {'conv': 1.0}, '_links': {}}
    """
    if not profiles:
        return profiles
    slow = {topo.path[t].name: s for t, s in enumerate(measured.slowdown) if s is not None and s > 0}
    return {tier: ({op: v * slow[tier] for op, v in ops.items()} if tier in slow else ops) for tier, ops in profiles.items()}


@dataclass(frozen=True)
class Proposal:
    plan: Plan
    reason: str
    predicted_before: float  # the running plan's objective value under the measured figures
    predicted_after: float  # the new plan's
    predicted_fps_before: float
    predicted_fps_after: float
    exits: str = ""  # what the new plan changes about early exits (:func:`exits_change`); "" without exits


def exits_change(before: ExitPlan | None, after: ExitPlan | None, tiers) -> str:
    """What ``after`` changes about the live exits of ``before``, in words; "" when neither has live exits.

    >>> from partition.exit_stage import LiveExit
    >>> on = ExitPlan((LiveExit(0, "stem", "stem_5", 0, "max_softmax", 0.5),), "agreement", 0.9, 0.92, (0.6, 0, 0.4), 128, ())
    >>> exits_change(None, on, ("device", "gateway", "edge"))
    'exits: stem on at 0.5 on device (agreement 0.92, budget 0.9)'
    """
    old = {e.index: e for e in (before.live if before else ())}
    new = {e.index: e for e in (after.live if after else ())}
    if not old and not new:
        return ""
    parts = []
    for i in sorted(set(old) | set(new)):
        a, b = old.get(i), new.get(i)
        if a is None:
            parts.append(f"{b.name} on at {b.threshold:.3g} on {tiers[b.tier]}")
        elif b is None:
            parts.append(f"{a.name} off")
        else:
            if b.threshold != a.threshold:
                parts.append(f"{a.name} threshold {a.threshold:.3g} -> {b.threshold:.3g}")
            if b.tier != a.tier:
                parts.append(f"{a.name} moved {tiers[a.tier]} -> {tiers[b.tier]}")
    budget = f" ({after.kind} {after.quality:.3g}, budget {after.bound:g})" if new else ""
    return "exits: " + (", ".join(parts) or "unchanged") + budget


class Replanner:
    """Proposes a new plan when measured figures make one clearly better.

    Args:
        graph, topology: what the running plan was made from.
        objective: the objective to re-plan for (``throughput`` for a stream).
        min_gain: the new plan's objective must be at least this much better (0.15: 15%).
        hold_s: no proposal within this many seconds of the last switch.
        exits: the early-exit candidates to choose from; by default (``exits_from_plan``) those the
            running plan carries, so a plan made with exits is re-planned with them.
        exits_from_plan: False when the running model has no exit heads (re-plan without exits).
        partition_kwargs: the running plan's other settings (codec, pins, SLO, profiles, ...; not a
            ``cost_model``, which is bound to one topology's speeds).
    """

    def __init__(
        self,
        graph: Graph,
        topology: Topology,
        objective: str = "throughput",
        *,
        min_gain: float = 0.15,
        hold_s: float = 10.0,
        exits: ExitCandidates | None = None,
        exits_from_plan: bool = True,
        **partition_kwargs,
    ) -> None:
        self.graph = graph
        self.topology = topology
        self.objective = objective
        self.min_gain = min_gain
        self.hold_s = hold_s
        if "cost_model" in partition_kwargs:
            raise ValueError("Replanner re-derives the cost model from the measured speeds: pass profiles=, not cost_model=")
        self.partition_kwargs: Mapping = partition_kwargs
        self.exits = exits
        self.exits_from_plan = exits_from_plan
        self.last_switch_s = float("-inf")
        self._ratios: dict[tuple[str, ...], dict] = {}

    def propose(
        self, now_s: float, current: Plan, measured: Measured, reason: str = "", *, battery_low: bool = False, hold: bool = True
    ) -> Proposal | None:
        """A better plan for the measured figures, or None (not better enough, or too soon).

        ``battery_low``: a device runs low, so the device tier is planned for energy and the tiers
        after it for the objective (:meth:`energy_first`); a plan is then better when it spends
        ``min_gain`` fewer device joules per frame, or as few and is ``min_gain`` better on the objective.
        ``hold=False``: whatever the time since the last switch (a battery crossing its threshold is
        an event with its own hysteresis, not a noisy figure).
        """
        if hold and now_s - self.last_switch_s < self.hold_s:
            return None
        topo = measured_topology(self.topology, measured)
        exits, dropped = self.exits_for(current)
        profiles = measured_profiles(self.partition_kwargs.get("profiles"), self.topology, measured)
        kwargs = {"model_name": current.model, **self.partition_kwargs, "exits": exits, "profiles": profiles}
        new = self.energy_first(topo, kwargs) if battery_low else partition(self.graph, topo, self.objective, **kwargs)
        codecs = tuple(current.codecs)
        if codecs not in self._ratios:  # compressors' measured ratios, as the running plan used them
            self._ratios[codecs] = calibrate_codecs(self.graph, codecs, self.partition_kwargs.get("calibration"))[1]
        cm = CostModel(self.graph, topo, profiles)
        plain = Problem(self.graph, topo, cm, list(codecs), self._ratios[codecs])
        if exits is not None and current.exits is not None and current.exits.live:  # the running plan priced with its exits
            live = tuple((e.index, e.threshold, e.tier) for e in current.exits.live)
            plain = Problem(self.graph, topo, cm, list(codecs), self._ratios[codecs], exit_terms(exits, live, plain)[0])
        old = plain.evaluate(current.assignment)
        before, after = objective_value(self.objective, old), objective_value(self.objective, new.predicted)
        better = after < before * (1 - self.min_gain)
        if battery_low:
            e_before, e_after = old.energy_j, new.predicted.energy_j
            better = e_after < e_before * (1 - self.min_gain) or (e_after <= e_before * (1 + 1e-9) and better)
        if not better:
            return None
        change = dropped or exits_change(current.exits, new.exits, current.tiers)
        why = (reason or f"measured {measured.describe(self.topology)}") + (f"; {change}" if change else "")
        return Proposal(new, why, before, after, old.throughput_fps, new.predicted.throughput_fps, change)

    def exits_for(self, current: Plan) -> tuple[ExitCandidates | None, str]:
        """The exit candidates to re-plan ``current`` with, and, when its live exits cannot be chosen
        again, the words that say the new plan drops them ("" otherwise)."""
        running = current.exits
        if self.exits is not None:
            return self.exits, ""
        if self.exits_from_plan and running is not None and running.candidates is not None:
            return running.candidates, ""
        if running is None or not running.live:
            return None, ""
        live = ", ".join(f"{e.name}@{e.threshold:.3g} on {current.tiers[e.tier]}" for e in running.live)
        why = (
            "the running plan carries no exit candidates (it was not made by partition(..., exits=)); give the Adapter exits="
            if running.candidates is None
            else "the running model has no exit heads"
        )
        return None, f"exits dropped ({live}): {why}"

    def energy_first(self, topo: Topology, kwargs: Mapping) -> Plan:
        """The device tier's ops as the ``energy`` objective places them (least device joules per frame),
        and the rest placed for the objective: the device keeps exactly those ops (pins) and the others
        run after it (``not_before``). Should the codec chosen for the rest cost the device more joules,
        the energy plan itself."""
        energy = partition(self.graph, topo, "energy", **kwargs)
        device, nxt = energy.tiers[0], energy.tiers[1]
        pins = {**dict(kwargs.get("pins") or {}), **{n: device for n, t in energy.assignment.items() if t == device}}
        after = {n: nxt for n, t in energy.assignment.items() if t != device}
        plan = partition(self.graph, topo, self.objective, **{**kwargs, "pins": pins, "not_before": after})
        return plan if plan.predicted.energy_j <= energy.predicted.energy_j * (1 + 1e-9) else energy

    def switched(self, now_s: float) -> None:
        """The runtime switched to a proposal at ``now_s``: start the hold time."""
        self.last_switch_s = now_s
