"""The traffic simulation: any :class:`~.scenario.Scenario` in SUMO through libsumo, one simulation per process.

:class:`TrafficSim` runs in the process that creates it (libsumo allows one simulation per
process); :mod:`.simproc` runs simulations in child processes (:func:`~.simproc.run_in_process`,
:class:`~.simproc.SimProcess`).

Signal control, by ``mode``:

- ``fixed_time``: the network's own program; ``actuated``: SUMO's gap-based actuated control on
  the program's own phases (an ``actuated`` copy of each program, loaded beside it);
- ``max_pressure_truth`` / ``greedy_truth``: :mod:`.controller` fed by SUMO's exact halting
  counts per lane (the upper bound for camera-driven control);
- ``camera``: the same controllers fed by the cameras' estimates (:meth:`TrafficSim.set_estimates`).

Controllers decide on a fixed grid (``control_step_s`` from the window's start) and follow the
program's yellow and all-red at every simulation step in between.
"""

from __future__ import annotations

import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from partition.errors import TierpipeError

from . import camera
from .controller import CONTROLLERS
from .scenario import Scenario

__all__ = [
    "TrafficSim",
    "SimOptions",
    "SimulationError",
    "simulate",
    "tripinfo_metrics",
    "delay_curve",
    "decision_times",
    "decision_due",
    "BASELINES",
    "MODES",
]

BASELINES = ("fixed_time", "actuated", "max_pressure_truth", "greedy_truth")
MODES = BASELINES + ("camera",)
_EPS = 1e-6


class SimulationError(TierpipeError):
    """SUMO failed or stopped answering: names the scenario, seed and mode."""


def decision_times(begin_s: float, until_s: float, control_step_s: float) -> np.ndarray:
    """The control grid: every ``control_step_s`` from ``begin_s``, before ``until_s``. A decision for grid time
    ``G`` is taken at the first simulation step at or after ``G`` and uses frames taken at or before ``G - lag``."""
    return begin_s + control_step_s * np.arange(0, max(np.ceil((until_s - begin_s) / control_step_s - _EPS), 0))


def decision_due(next_s: float, t: float, control_step_s: float) -> tuple[float | None, float]:
    """At a simulation step at ``t``: the grid time of the decision due now (None if none) and the next grid time.

    The first step at or after each grid time decides for it, whatever the step length (a 0.3 s step
    decides at 0, 5.1, 10.2, ... for a 5 s grid); grid times a long step jumped over are skipped.
    """
    if t < next_s - _EPS:
        return None, next_s
    return next_s, float(next_s + control_step_s * (np.floor((t - next_s) / control_step_s + _EPS) + 1))


@dataclass(frozen=True)
class SimOptions:
    """How signals are controlled (the same for every mode that uses :mod:`.controller`)."""

    control_step_s: float = 5.0
    min_green_s: float = 5.0
    max_green_s: float = 60.0
    lag_s: float = 1.0  # camera mode: a decision at t uses frames taken at or before t - lag_s
    controller: str = "max_pressure"  # camera mode's controller
    step_s: float | None = None  # SUMO's step (None: the scenario's own, 1 s by default); 10 frames/s needs 0.1 s


class _Halting(Mapping):
    """Halting vehicles per lane, read from SUMO when a controller asks (cached for one step)."""

    def __init__(self, sumo) -> None:
        self._get, self._cache = sumo.lane.getLastStepHaltingNumber, {}

    def __getitem__(self, lane: str) -> float:
        if lane not in self._cache:
            self._cache[lane] = float(self._get(lane)) if lane else 0.0
        return self._cache[lane]

    def get(self, lane, default=0.0):
        return self[lane]

    def __iter__(self):
        return iter(self._cache)

    def __len__(self) -> int:
        return len(self._cache)


class TrafficSim:
    """One SUMO simulation of ``scenario`` in this process.

    Args:
        scenario: the network, demand and lights (:class:`~.scenario.Scenario`).
        seed: SUMO's ``--seed`` (vehicle arrivals) and the cameras' noise.
        mode: one of :data:`MODES`.
    """

    def __init__(self, scenario: Scenario, seed: int, mode: str = "fixed_time", options: SimOptions = SimOptions()) -> None:
        import libsumo

        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
        self.sumo, self.scenario, self.seed, self.mode, self.options = libsumo, scenario, seed, mode, options
        self._tmp = tempfile.TemporaryDirectory(prefix="tierpipe-sumo-")
        work = Path(self._tmp.name)
        self.tripinfo = work / "tripinfo.xml"
        extra = [str(a) for a in scenario.additional]
        if mode == "actuated":
            extra.append(str(_write_actuated(scenario, work / "actuated.add.xml")))
        cmd = ["sumo"] + (
            ["-c", str(scenario.config)] if scenario.config else ["-n", str(scenario.net), "-r", ",".join(map(str, scenario.routes))]
        )
        cmd += [
            "--begin",
            f"{scenario.begin_s:g}",
            "--end",
            f"{scenario.end_s:g}",
            "--seed",
            str(seed),
            "--no-step-log",
            "true",
            "--no-warnings",
            "true",
            "--duration-log.disable",
            "true",
            "--tripinfo-output",
            str(self.tripinfo),
            "--tripinfo-output.write-unfinished",
            "true",
            "--tripinfo-output.write-undeparted",
            "true",
        ]
        if extra:
            cmd += ["-a", ",".join(extra)]
        if options.step_s:
            cmd += ["--step-length", f"{options.step_s:g}"]
        libsumo.start(cmd)
        self.t = libsumo.simulation.getTime()
        self.dt = libsumo.simulation.getDeltaT()
        self.cams = scenario.cameras
        if mode == "actuated":
            for j in scenario.junctions:
                libsumo.trafficlight.setProgram(j.id, _ACTUATED)
        self.controllers = {}
        if mode not in ("fixed_time", "actuated"):
            name = options.controller if mode == "camera" else mode.removesuffix("_truth")
            self.controllers = {
                j.id: CONTROLLERS[name](j.program, options.min_green_s, options.max_green_s, options.control_step_s, since=self.t)
                for j in scenario.junctions
            }
        self._state: dict[str, str] = {}
        self._estimates: list[list[tuple[float, np.ndarray]]] = [[] for _ in self.cams]
        self._lane_slot = [{ln.id: k for k, ln in enumerate(a.lanes)} for a in self.cams]
        self.rng = np.random.default_rng(seed)
        self.gain = np.random.default_rng(seed + 1000).uniform(0.85, 1.1, len(self.cams))
        self.switches = 0
        self.teleports = 0
        self._seen_loss: dict[str, float] = {}  # live view: each vehicle's time loss when last seen
        self._arrived_loss: list[float] = []  # ... and of those gone since (arrived)
        self._next_decision_s = scenario.begin_s

    # ------------------------------------------------------------------ stepping
    @property
    def done(self) -> bool:
        return self.t >= self.scenario.end_s - _EPS

    def _decision_due(self) -> float | None:
        grid, self._next_decision_s = decision_due(self._next_decision_s, self.t, self.options.control_step_s)
        return grid

    def step(self) -> None:
        """Set every controlled light for now, then advance SUMO one step."""
        if self.controllers:
            grid = self._decision_due()
            queues: Mapping[str, float] = {}
            if grid is not None:
                queues = self._camera_queues(grid - self.options.lag_s) if self.mode == "camera" else _Halting(self.sumo)
            for tid, c in self.controllers.items():
                state = c.update(self.t, queues, decide=grid is not None)
                if self._state.get(tid) != state:
                    self.sumo.trafficlight.setRedYellowGreenState(tid, state)
                    self._state[tid] = state
        else:
            self._count_program_switches()
        self.sumo.simulationStep()
        self.teleports += self.sumo.simulation.getStartingTeleportNumber()
        self.t = self.sumo.simulation.getTime()

    def _count_program_switches(self) -> None:
        """Fixed-time and actuated runs: count changes from one green phase to another, as controllers do."""
        for j in self.scenario.junctions:
            state = self.sumo.trafficlight.getRedYellowGreenState(j.id)
            if "y" not in state and any(c in "Gg" for c in state) and self._state.get(j.id) != state:
                self.switches += j.id in self._state
                self._state[j.id] = state

    def advance(self, until_s: float) -> None:
        while self.t < until_s - _EPS and not self.done:
            self.step()

    # ------------------------------------------------------------------ cameras
    def set_estimates(self, updates: list[tuple[int, float, np.ndarray]]) -> None:
        """Camera results ``(camera, stamp s, halting per lane [5])``, in any order. The stamp is the simulated
        time the frame was taken (realtime runs: the simulated time its result arrived)."""
        for cam, stamp_s, values in updates:
            self._estimates[cam].append((stamp_s, np.asarray(values, dtype=np.float32)))

    def _camera_queues(self, cutoff_s: float) -> dict[str, float]:
        """Per lane, the latest estimate stamped at or before ``cutoff_s`` (0 without one)."""
        out: dict[str, float] = {}
        cutoff = cutoff_s + _EPS
        for cam, history in enumerate(self._estimates):
            usable = [e for e in history if e[0] <= cutoff]
            if not usable:
                continue
            frame_t, values = max(usable, key=lambda e: e[0])
            self._estimates[cam] = [e for e in history if e[0] >= frame_t]  # older ones are never needed again
            for ln, k in self._lane_slot[cam].items():
                out[ln] = max(float(values[k]), 0.0)
        return out

    def observe(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every camera now: frames uint8 ``[C, 3, H, W]``; what they can see, halting per lane ``[C, 5]``
        (0 where a lane is absent); and SUMO's count for the whole lane ``[C, 5]``."""
        v, sumo = self.sumo.vehicle, self.sumo
        light = self.gain * (1.0 - 0.55 * min((self.t - self.scenario.begin_s) / max(self.scenario.end_s - self.scenario.begin_s, 1), 1.0))
        frames = np.empty((len(self.cams), 3, camera.H, camera.W), dtype=np.uint8)
        visible = np.zeros((len(self.cams), camera.MAX_LANES), dtype=np.float32)
        whole = np.zeros_like(visible)
        for i, a in enumerate(self.cams):
            slots, seen = self._lane_slot[i], []
            for k, ln in enumerate(a.lanes):
                whole[i, k] = sumo.lane.getLastStepHaltingNumber(ln.id)
                for vid in sumo.lane.getLastStepVehicleIDs(ln.id):
                    front = ln.length_m - v.getLanePosition(vid)
                    speed = v.getSpeed(vid)
                    seen.append((slots[ln.id], front, v.getLength(vid), speed, vid))
                    if speed < 0.1 and front <= camera.VIEW_M:
                        visible[i, k] += 1
            frames[i] = camera.render(seen, tuple(ln.width_m for ln in a.lanes), float(light[i]), self.rng)
        return frames, visible, whole

    def snapshot(self) -> dict:
        """For the live view: every vehicle ``[x, y, halted]`` (network coordinates), each controlled light's
        state, and the mean delay (time loss) of the vehicles that left the network so far, each with the
        time loss it had when last seen here (sampled at every snapshot; :meth:`finish` has SUMO's exact figures)."""
        v = self.sumo.vehicle
        vehicles, present = [], set()
        for vid in v.getIDList():
            x, y = v.getPosition(vid)
            vehicles.append([round(x, 1), round(y, 1), int(v.getSpeed(vid) < 0.1)])
            self._seen_loss[vid] = v.getTimeLoss(vid)
            present.add(vid)
        for vid in [x for x in self._seen_loss if x not in present]:
            self._arrived_loss.append(self._seen_loss.pop(vid))
        signals = {j.id: self.sumo.trafficlight.getRedYellowGreenState(j.id) for j in self.scenario.junctions}
        mean = float(np.mean(self._arrived_loss)) if self._arrived_loss else 0.0
        return {"t": self.t, "vehicles": vehicles, "signals": signals, "mean_delay_s": round(mean, 2)}

    # ------------------------------------------------------------------ results
    def finish(self) -> dict:
        """Close SUMO; the standard per-vehicle figures from its tripinfo output."""
        self.sumo.close()
        out = {
            "mode": self.mode,
            "seed": self.seed,
            "begin_s": self.scenario.begin_s,
            "end_s": self.scenario.end_s,
            **tripinfo_metrics(self.tripinfo),
            "delay_curve": delay_curve(self.tripinfo, self.scenario.begin_s, self.scenario.end_s),
            "teleports": self.teleports,
            "phase_switches": sum(c.switches for c in self.controllers.values()) if self.controllers else self.switches,
        }
        self._tmp.cleanup()
        return out


def delay_curve(path: Path, begin_s: float, end_s: float, points: int = 60) -> list[list[float]]:
    """``[[t, mean delay s], ...]``: the mean time loss of the vehicles arrived by ``t``, at ``points`` times
    over the window (0 before the first arrival); the live view's curve per controller."""
    rows = [(float(r.get("arrival")), float(r.get("timeLoss"))) for r in ET.parse(path).getroot().findall("tripinfo")]
    done = sorted((a, loss) for a, loss in rows if a >= 0)
    arrivals = np.array([a for a, _ in done])
    cumulative = np.cumsum([loss for _, loss in done]) if done else np.zeros(0)
    out = []
    for t in np.linspace(begin_s, end_s, points):
        n = int(np.searchsorted(arrivals, t, side="right"))
        out.append([round(float(t), 1), round(float(cumulative[n - 1] / n), 2) if n else 0.0])
    return out


def tripinfo_metrics(path: Path) -> dict:
    """SUMO's per-vehicle figures, averaged (tripinfo with ``write-unfinished`` and ``write-undeparted``).

    - ``vehicles``: entered the network; ``arrived``; ``unfinished``: still in the network at the end;
      ``never_inserted``: due to depart but never got in (the entry was blocked).
    - ``mean_delay_s``: ``timeLoss`` (time lost against driving at the desired speed) over every vehicle
      that entered, unfinished ones with what they had lost by the end; ``mean_waiting_s`` likewise.
    - ``mean_depart_delay_s``: waiting to enter, over every vehicle due (never-inserted ones included);
      ``mean_total_delay_s``: delay plus depart delay per vehicle due: a blocked entry is not free.
    - ``mean_trip_s``: over arrived vehicles.
    """
    rows = ET.parse(path).getroot().findall("tripinfo")
    entered = [r for r in rows if float(r.get("depart", -1)) >= 0]
    arrived = [r for r in entered if float(r.get("arrival", -1)) >= 0]

    def mean(values) -> float:
        values = list(values)
        return float(np.mean(values)) if values else 0.0

    return {
        "vehicles": len(entered),
        "arrived": len(arrived),
        "unfinished": len(entered) - len(arrived),
        "never_inserted": len(rows) - len(entered),
        "mean_delay_s": mean(float(r.get("timeLoss")) for r in entered),
        "mean_waiting_s": mean(float(r.get("waitingTime")) for r in entered),
        "mean_trip_s": mean(float(r.get("duration")) for r in arrived),
        "mean_depart_delay_s": mean(float(r.get("departDelay", 0)) for r in rows),
        "mean_total_delay_s": mean(float(r.get("timeLoss")) + float(r.get("departDelay", 0)) for r in rows),
    }


_ACTUATED = "tierpipe-actuated"


def _write_actuated(scenario: Scenario, path: Path) -> Path:
    """An ``actuated`` copy of the program SUMO runs for each light: the same phases; greens run between their
    own ``minDur``/``maxDur`` where the program has them, else 5-60 s, extended on detector gaps."""
    lines = ["<additional>"]
    for j in scenario.junctions:
        lines.append(f'  <tlLogic id="{j.id}" type="actuated" programID="{_ACTUATED}" offset="0">')
        for ph in j.phases:
            green = any(c in "Gg" for c in ph.state) and "y" not in ph.state.lower()
            lo = ph.min_s if ph.min_s is not None else min(5.0, ph.duration_s)
            hi = ph.max_s if ph.max_s is not None else max(60.0, ph.duration_s)
            span = f' minDur="{lo:g}" maxDur="{hi:g}"' if green else ""
            lines.append(f'    <phase duration="{ph.duration_s:g}" state="{ph.state}"{span}/>')
        lines.append("  </tlLogic>")
    lines.append("</additional>")
    path.write_text("\n".join(lines) + "\n")
    return path


def simulate(scenario: Scenario, seed: int, mode: str, options: SimOptions = SimOptions()) -> dict:
    """A whole run without cameras (a baseline mode); returns :meth:`TrafficSim.finish`'s figures."""
    sim = TrafficSim(scenario, seed, mode, options)
    while not sim.done:
        sim.step()
    return sim.finish()
