"""Live adaptation: measure, detect drift, re-plan, switch; and the per-second timeline of a stream.

:class:`Adapter` runs inside the driver's stream loop, once a second:

1. **Measure** (never read the conditions file): each link's bandwidth is the bytes its senders
   put on the wire over the time they were busy sending them in the last ``window_s``
   (:class:`runtime.monitor.LinkMeter`; the slowest node of a tier stands for its link, since
   one plan serves every node of a tier). On a real link that time is the push's round trip: a
   frame's fixed part (the cost model's ``call_s``, profiled one way, calibrated in a run) is taken out, and drift is
   judged on what the link carries with its ends' work per byte (profiled ``cpu_s_per_byte``: a slow device's serialising
   must not read as a slow wire); the re-planner gets the wire's share; each tier's slowdown is the time its stages spent per
   frame over the time the running plan predicted for them (the slowest node again).
2. **Detect**: a :class:`runtime.monitor.DriftMonitor` reports figures that stayed more than
   ``threshold`` off the running plan's for a whole ``window_s``.
3. **Re-plan**: :class:`partition.replan.Replanner` partitions again with the measured figures
   (codecs searched again) and proposes a plan only when it is predicted ``min_gain`` better,
   and not within ``hold_s`` of the last switch. It runs in a thread, so the driver keeps
   feeding and collecting frames while the solver works (``plan_s`` in the report).
4. **Switch**: :meth:`Pipeline.switch` in the background; frames keep flowing on the old plan
   until every actor has the new one.
   **Early exits** are chosen again with the cut, from the candidates the running plan carries
   (``partition(..., exits=)`` puts them in ``plan.exits``) or ``exits=`` given here, within the same
   accuracy budget; a switch's ``exits`` says what changed about them (an exit turned on, a lower
   threshold, an exit moved to another tier), and a re-plan that cannot keep them says so in its reason.
5. **Battery, per node**: when a device reports less than ``battery_low_pct`` (emulated
   ``battery:`` conditions, or the board's own battery sensor), a plan is made with the device
   tier planned for energy (least device joules per frame) and the tiers after it for the
   objective (:meth:`partition.replan.Replanner.energy_first`), and only that device's cameras
   move to it (``Pipeline.switch(..., sources=)``): the other cameras stay on the throughput
   plan. A second camera that runs low joins the energy plan already loaded at once. A device back
   above ``battery_ok_pct`` returns to the pipeline's plan at once (nothing to load). If no plan
   spends ``min_gain`` fewer device joules than the running one, the camera stays where it is.

Defaults (documented choices): window 3 s, threshold 30%, min gain 15%, hold 10 s, battery low
below 20% and fine again from 30%.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from partition.cost import CostModel
from partition.graph import Graph
from partition.pricing import Problem
from partition.replan import Measured, Replanner

from .monitor import DriftMonitor, LinkEnds, LinkMeter
from .timeline import TimelineRecorder

__all__ = ["Adapter", "TimelineRecorder"]

log = logging.getLogger(__name__)


@dataclass
class _Switch:
    at_s: float
    reason: str
    predicted_fps_before: float
    predicted_fps_after: float
    version: int | None = None
    done_s: float | None = None
    error: str | None = None
    plan_s: float | None = None  # re-planning, from the decision until the new plan was ready
    nodes: tuple[str, ...] = ()  # the devices whose cameras moved (empty: every camera)
    steps_ms: dict | None = None  # from the switch's start: stages built, sent to every actor, live
    loads: dict | None = None  # how the actors came by their stage: probed, told (no probe), reused
    exits: dict | None = None  # what the new plan changes about early exits: {change, before, after}; None without exits
    handle: object = field(default=None, repr=False)  # the pipeline's SwitchHandle (runtime.driver), while it loads


class Adapter:
    """Closes the loop for one pipeline (see the module's docstring).

    Args:
        graph: the captured model the running plan was made from.
        objective, codec, partition settings: how to re-plan (``codec="auto"`` lets it pick int8 on a slow link;
            ``exits=`` early-exit candidates, by default those the running plan carries).
    """

    def __init__(
        self,
        graph: Graph,
        objective: str = "throughput",
        *,
        window_s: float = 3.0,
        threshold: float = 0.3,
        min_gain: float = 0.15,
        hold_s: float = 10.0,
        battery_low_pct: float = 20.0,
        battery_ok_pct: float = 30.0,
        background: bool = True,
        **partition_kwargs,
    ) -> None:
        self.graph = graph
        self.background = background  # re-plan in a thread (False: inline, for tests)
        self._planning: threading.Thread | None = None
        self._planning_for: tuple = ()
        self.battery_low_pct, self.battery_ok_pct = battery_low_pct, battery_ok_pct
        self.low: dict[str, _Switch | None] = {}  # devices below battery_low_pct -> the switch that moved them
        self.objective = objective
        self.window_s = window_s
        self.threshold = threshold
        self.min_gain = min_gain
        self.hold_s = hold_s
        self.partition_kwargs = partition_kwargs
        self.replanner: Replanner | None = None
        self.monitor: DriftMonitor | None = None
        self.meters: dict[str, LinkMeter] = {}
        self.last: dict[str, dict] = {}  # node -> its previous cumulative counters
        self.tier_recent: dict[int, list] = {}
        self.assumed = Measured(())  # the figures the running plan was made for
        self.switches: list[_Switch] = []
        self.replans: deque[dict] = deque(maxlen=200)  # every re-plan, also those that kept the running plan
        self.step_s = 0.0  # the driver's time in step(): measuring, deciding
        self.start_s: float | None = None

    @classmethod
    def for_pipeline(cls, plan, model, graph: Graph | None = None) -> Adapter:
        """``Pipeline(adapt=True)``'s adapter: the defaults and ``codec="auto"``; ``graph`` captured again
        unless given (an :class:`~partition.exits.ExitModel`'s backbone, as ``partition`` saw it)."""
        if graph is None:
            from partition import capture
            from partition.exits import ExitModel

            graph = capture(model.backbone if isinstance(model, ExitModel) else model, plan.example_inputs(), timing="analytic")
        return cls(graph, codec="auto")

    # ------------------------------------------------------------------ setup
    def attach(self, pipe, start_s: float | None = None) -> None:
        from partition.exits import ExitModel

        topo = pipe.topology
        self.replanner = Replanner(
            self.graph,
            topo,
            self.objective,
            min_gain=self.min_gain,
            hold_s=self.hold_s,
            exits_from_plan=isinstance(pipe.model, ExitModel),  # a bare model cannot run exits' heads
            **self.partition_kwargs,
        )
        links = [topo.links[j].bandwidth_mbps for j in range(len(topo.path) - 1)]
        # an emulated link is its wire alone (the shaper's time): the profiled ends' work is for real links
        if pipe.emulate:
            self.ends = LinkEnds((0.0,) * len(links), (0.0,) * len(links))
        else:
            self.ends = LinkEnds.of(CostModel(self.graph, topo, self.partition_kwargs.get("profiles")))
        self.assumed = Measured(tuple(links), tuple(1.0 for _ in topo.path))
        self.monitor = DriftMonitor(self._expected(self.assumed), self.threshold, self.window_s)
        self.start_s = start_s if start_s is not None else time.perf_counter()

    def _expected(self, m: Measured) -> dict[str, float]:
        out = {f"link {j} Mbit/s": self.ends.carried(j, bw) for j, bw in enumerate(m.bandwidth_mbps) if bw}
        out.update({f"tier {t} slowdown": s for t, s in enumerate(m.slowdown) if s})
        return out

    # ------------------------------------------------------------------ the loop
    def step(self, pipe, metrics: list[dict]) -> None:
        """One round: measure from the stages' ``counters``, and re-plan / switch when warranted."""
        now = time.perf_counter() - self.start_s
        self._finish_switch(pipe, now)
        measured = self._measure(pipe, metrics, now)
        reasons = self.monitor.observe(now, self._expected(measured))
        if self._planning is not None:  # a re-plan is running in the background
            if not self._planning.is_alive():
                self._planned(pipe)
            return
        if pipe.switching:  # a switch is in progress: decide next round
            return
        full = Measured(
            tuple(b if b is not None else a for b, a in zip(measured.bandwidth_mbps, self.assumed.bandwidth_mbps)),
            tuple(s if s is not None else a for s, a in zip(measured.slowdown, self.assumed.slowdown)),
        )
        levels = {m["node"]: m["battery_pct"] for m in metrics if pipe.tier_of[m["node"]] == 0 and m.get("battery_pct") is not None}
        self._batteries_back(pipe, levels, now)
        low = sorted(n for n, pct in levels.items() if pct < self.battery_low_pct and n not in self.low)
        if low:
            why = ", ".join(f"{n} battery {levels[n]:.0f}%" for n in low)
            if not self._join_energy_plan(pipe, low, now, why):
                self._plan(now, pipe.plan, full, f"{why} < {self.battery_low_pct:.0f}%: planned for energy", low)
        elif reasons:
            self._plan(now, pipe.plan, full, "; ".join(reasons))
        else:
            return
        if not self.background and self._planning is not None:
            self._planning.join()
            self._planned(pipe)

    def _plan(self, now: float, current, full: Measured, reason: str, nodes: Sequence[str] = ()) -> None:
        """Partition again for ``full`` in a thread: the driver goes on feeding and collecting frames.
        ``nodes``: devices low on battery, for which an energy plan is made (only their cameras move)."""
        box: dict = {}

        def job() -> None:
            try:
                box["proposal"] = (
                    self.replanner.propose(now, current, full, reason, battery_low=True, hold=False)
                    if nodes
                    else self.replanner.propose(now, current, full, reason)
                )
            except Exception as exc:  # a re-plan that fails leaves the running plan; said in the log
                box["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"

        self._planning = threading.Thread(target=job, name="tierpipe-replan", daemon=True)
        self._planning_for = (now, full, box, tuple(nodes))
        self._planning.start()

    def _planned(self, pipe) -> None:
        """The re-plan finished: switch to its proposal, or keep the running plan as best for these figures."""
        at, full, box, nodes = self._planning_for
        self._planning = None
        proposal = box.get("proposal")
        self.replans.append(
            {
                "at_s": round(at, 3),
                "plan_s": round(time.perf_counter() - self.start_s - at, 3),
                "for": full.describe(pipe.topology),
                "nodes": list(nodes),
                "outcome": box.get("error") or ("proposed" if proposal else "kept the running plan"),
            }
        )
        if "error" in box:
            log.warning("re-planning for %s failed (%s); the running plan stays", full, box["error"])
        if nodes and proposal is None:  # no plan spends clearly less: they stay on theirs
            self.low.update({n: None for n in nodes})
            return
        if proposal is None:
            self.monitor.rebase(self._expected(full))  # the running plan stays best for these figures
            self.assumed = full
            return
        now = time.perf_counter() - self.start_s
        # emulation's compute targets come from the nominal figures: the conditions slow the nodes down themselves
        cm = CostModel(self.graph, pipe.topology, self.partition_kwargs.get("profiles"))
        nominal = Problem(self.graph, pipe.topology, cm).evaluate(proposal.plan.assignment).stage_compute_s
        record = _Switch(
            round(at, 3),
            proposal.reason,
            proposal.predicted_fps_before,
            proposal.predicted_fps_after,
            plan_s=round(now - at, 3),
            nodes=nodes,
            exits=_exits_record(pipe.plan, proposal),
        )
        self.switches.append(record)
        try:
            moved = self._sources(pipe, nodes) if nodes else None
            record.handle = pipe.switch(proposal.plan, emulated_compute_s=nominal, wait=False, sources=moved)
        except Exception as exc:  # refused before it started (another in progress, other tiers)
            record.error = str(exc)
            return
        if nodes:  # the pipeline's plan, its figures and its hold time are unchanged
            self.low.update({n: record for n in nodes})
            return
        self.replanner.switched(now)
        self.assumed = full
        self.monitor.rebase(self._expected(full))

    @staticmethod
    def _sources(pipe, nodes: Sequence[str]) -> list[int]:
        return [source for source, node in enumerate(pipe.stream_nodes) if node in nodes]

    def _join_energy_plan(self, pipe, nodes: list[str], now: float, why: str) -> bool:
        """Devices newly low on battery join the energy plan other cameras already run, if there is one."""
        moved = next(
            (r for r in self.low.values() if r is not None and r.version is not None and r.error is None and r.version in pipe.plans), None
        )
        if moved is None:
            return False
        pipe.route(self._sources(pipe, nodes), moved.version)
        self.low.update({n: moved for n in nodes})
        self.switches.append(
            _Switch(
                round(now, 3),
                f"{why} < {self.battery_low_pct:.0f}%: joined the energy plan v{moved.version}",
                moved.predicted_fps_before,
                moved.predicted_fps_after,
                moved.version,
                round(now, 3),
                plan_s=0.0,
                nodes=tuple(nodes),
            )
        )
        return True

    def _batteries_back(self, pipe, levels: dict[str, float], now: float) -> None:
        """Devices charged above ``battery_ok_pct`` again: their cameras return to the pipeline's plan."""
        back = sorted(n for n in self.low if levels.get(n, 0.0) >= self.battery_ok_pct)
        moved = [n for n in back if self.low[n] is not None and self.low[n].error is None]
        if moved:
            energy = self.low[moved[0]]
            pipe.route(self._sources(pipe, moved), None)
            why = ", ".join(f"{n} battery back to {levels[n]:.0f}%" for n in moved)
            self.switches.append(
                _Switch(
                    round(now, 3),
                    f"{why}: planned for {self.objective} again",
                    energy.predicted_fps_after,
                    pipe.plan.predicted.throughput_fps,
                    pipe.version,
                    round(now, 3),
                    plan_s=0.0,
                    nodes=tuple(moved),
                )
            )
        for n in back:
            del self.low[n]

    def _finish_switch(self, pipe, now: float) -> None:
        record = self.switches[-1] if self.switches else None
        if record is not None and record.done_s is None and record.error is None and record.handle is not None and record.handle.done:
            done = record.handle.result
            if record.handle.error:
                record.error = record.handle.error
            else:
                record.version, record.done_s = done["version"], round(now, 3)
                record.steps_ms = {"built": done.get("build_ms"), "sent": done.get("shipped_ms"), "live": done.get("prepare_ms")}
                record.loads = done.get("loads")

    def _measure(self, pipe, metrics: list[dict], now: float) -> Measured:
        k = len(pipe.plan.tiers)
        bandwidth: list[float | None] = [None] * (k - 1)
        slowdown: list[float | None] = [None] * k
        for m in metrics:
            node, t = m["node"], pipe.tier_of[m["node"]]
            prev = self.last.get(node, {})
            self.last[node] = m
            if "wire_bytes_total" in m and t < k - 1:
                meter = self.meters.setdefault(node, LinkMeter(self.window_s))
                if prev and m.get("incarnation") == prev.get("incarnation"):
                    busy, nbytes = m["wire_busy_s_total"] - prev["wire_busy_s_total"], m["wire_bytes_total"] - prev["wire_bytes_total"]
                    fixed = (m.get("wire_calls_total", 0) - prev.get("wire_calls_total", 0)) * self.ends.call_s[t]
                    # a real link: each call's fixed time is not the wire's. Where it would be most of the round trip
                    # at the assumed rate (small frames) and the round trips are not far longer than it either, the
                    # bytes cannot tell the wire's rate: left out
                    if "wire_calls_total" not in m or nbytes * 8e-6 / self.assumed.bandwidth_mbps[t] >= fixed or busy >= 4 * fixed:
                        meter.add(now, nbytes, max(busy - fixed, 0.5 * busy))
                bw = meter.mbps(now)
                if bw is not None and "wire_calls_total" in m:
                    bw = self.ends.wire(t, bw, self.assumed.bandwidth_mbps[t])
                if bw is not None:
                    bandwidth[t] = bw if bandwidth[t] is None else min(bandwidth[t], bw)
            if prev and m.get("incarnation") == prev.get("incarnation"):
                spent = m["tier_s_total"] - prev["tier_s_total"]
                planned = m["tier_planned_s_total"] - prev["tier_planned_s_total"]
                recent = self.tier_recent.setdefault(node, [])
                recent.append((now, spent, planned))
                recent[:] = [r for r in recent if r[0] >= now - self.window_s]
                s_sum, p_sum = sum(r[1] for r in recent), sum(r[2] for r in recent)
                if p_sum > 0.05:  # time spent / time predicted; a stage of a few ms in the window is its overheads
                    ratio = s_sum / p_sum
                    slowdown[t] = ratio if slowdown[t] is None else max(slowdown[t], ratio)
        return Measured(tuple(bandwidth), tuple(slowdown))

    def report(self, timeline: TimelineRecorder | None = None) -> list[dict]:
        """``plan_switches``: when, why, the predictions, how long loading took, and ``pause_ms``: the
        longest a camera waited between two of its results from the decision to 1 s after the switch
        (``gap_before_ms``: the same over as long a stretch just before it, for comparison)."""
        out = []
        for s in self.switches:
            end = (s.done_s if s.done_s is not None else s.at_s) + 1.0
            span = end - s.at_s
            out.append(
                {
                    "at_s": s.at_s,
                    "reason": s.reason,
                    "predicted_fps_before": s.predicted_fps_before,
                    "predicted_fps_after": s.predicted_fps_after,
                    "version": s.version,
                    "switch_s": (s.done_s - s.at_s) if s.done_s is not None else None,
                    "error": s.error,
                    "plan_s": s.plan_s,
                    "nodes": list(s.nodes),
                    "steps_ms": s.steps_ms,
                    "loads": s.loads,
                    "exits": s.exits,
                    "pause_ms": timeline.longest_gap_ms(s.at_s, end) if timeline else None,
                    # the same figure over as long a stretch just before: what the stream does anyway
                    "gap_before_ms": timeline.longest_gap_ms(s.at_s - span, s.at_s) if timeline else None,
                }
            )
        return out


def _exits_record(before, proposal) -> dict | None:
    """A switch's ``exits``: the change in words and the live exits before and after; None without exits."""
    if not proposal.exits:
        return None
    after = proposal.plan.exits
    return {
        "change": proposal.exits,
        "before": [e.to_json() for e in (before.exits.live if before.exits else ())],
        "after": [e.to_json() for e in (after.live if after else ())],
    }
