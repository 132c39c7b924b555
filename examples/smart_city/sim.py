"""The traffic simulation: SUMO through libsumo, one simulation per process.

:class:`TrafficSim` runs in the process that creates it (libsumo allows one simulation
per process); :func:`run_in_process` runs a whole simulation in a child process and
:class:`SimProcess` drives one step by step from another process (the demo's driver).

Sixteen cameras, one per approach of the four inner junctions, in the order of
:data:`APPROACHES`. The ground truth of a camera is ``lane.getLastStepHaltingNumber``
of its two incoming lanes.
"""

from __future__ import annotations

import multiprocessing as mp
import re
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import camera
from .controller import AXES, AxisController
from .network import NETS, routes_xml

__all__ = ["APPROACHES", "JUNCTIONS", "Approach", "TrafficSim", "SimProcess", "run_in_process", "STEP_S"]

STEP_S = 0.1                     # simulation step: cameras take a frame every step (10 per simulated second)
JUNCTIONS = ("A0", "A1", "B0", "B1")
_NODE = re.compile(r"(A0|A1|B0|B1|left\d|right\d|top\d|bottom\d)")


@dataclass(frozen=True)
class Approach:
    junction: str
    incoming: str       # edge into the junction
    outgoing: str       # the edge beside it, leaving the junction
    axis: str           # "EW" or "NS"

    @classmethod
    def of(cls, edge: str) -> "Approach":
        src, dst = _NODE.findall(edge)
        if src[0] in "lr" or dst[0] in "lr":
            axis = "EW"
        elif src[0] in "tb" or dst[0] in "tb":
            axis = "NS"
        else:
            axis = "EW" if src[0] != dst[0] else "NS"
        return cls(dst, edge, dst + src, axis)


APPROACHES = tuple(Approach.of(e) for e in (
    "A1A0", "B0A0", "bottom0A0", "left0A0", "A0A1", "B1A1", "left1A1", "top0A1",
    "A0B0", "B1B0", "bottom1B0", "right0B0", "A1B1", "B0B1", "right1B1", "top1B1"))


class TrafficSim:
    """One SUMO simulation in this process.

    Args:
        seed: SUMO's ``--seed`` (vehicle arrivals) and the cameras' noise.
        duration_s: simulated seconds; the demand wave switches axis halfway.
        program: ``static`` (fixed time) or ``actuated`` signal programs as SUMO builds them;
            :meth:`set_signal` overrides them (the external controllers start from ``static``).
    """

    def __init__(self, seed: int, duration_s: float, program: str = "static", workdir: str | None = None) -> None:
        import libsumo

        self.sumo = libsumo
        self.seed, self.duration_s = seed, duration_s
        self._tmp = tempfile.TemporaryDirectory(prefix="tierpipe-sumo-") if workdir is None else None
        work = Path(workdir or self._tmp.name)
        routes, self.tripinfo = work / "routes.rou.xml", work / "tripinfo.xml"
        routes.write_text(routes_xml(duration_s))
        libsumo.start(["sumo", "-n", str(NETS[program]), "-r", str(routes), "--seed", str(seed),
                       "--step-length", str(STEP_S), "--no-step-log", "true", "--no-warnings", "true",
                       "--tripinfo-output", str(self.tripinfo), "--tripinfo-output.write-unfinished", "true"])
        self.t = 0.0
        self.rng = np.random.default_rng(seed)
        self.gain = np.random.default_rng(seed + 1000).uniform(0.85, 1.1, len(APPROACHES))
        self.lane_len = {a.incoming: libsumo.lane.getLength(f"{a.incoming}_0") for a in APPROACHES}
        self.states = {j: self._signal_states(j) for j in JUNCTIONS}
        self.switches = 0
        self._last_state: dict[str, str] = {}

    def _signal_states(self, junction: str) -> dict[tuple[str, str | None], str]:
        """SUMO's own signal groups for each (phase, axis): green and yellow per axis, and all-red."""
        tl = self.sumo.trafficlight
        links = tl.getControlledLinks(junction)
        axis_of = {a.incoming: a.axis for a in APPROACHES}
        phases = [p.state for p in tl.getAllProgramLogics(junction)[0].phases]
        states: dict[tuple[str, str | None], str] = {("red", None): "r" * len(phases[0])}
        for i, state in enumerate(phases):
            green = [k for k, c in enumerate(state) if c in "Gg"]
            if green and "y" not in state:
                axis = axis_of[links[green[0]][0][0].rsplit("_", 1)[0]]
                states[("green", axis)] = state
                states[("yellow", axis)] = phases[(i + 1) % len(phases)]
        return states

    # ------------------------------------------------------------------ stepping
    def step(self) -> None:
        self.sumo.simulationStep()
        self.t += STEP_S

    @property
    def done(self) -> bool:
        return self.t >= self.duration_s - 1e-9

    def queues(self) -> np.ndarray:
        """Ground truth: halting vehicles per incoming lane, ``[16, 2]``."""
        get = self.sumo.lane.getLastStepHaltingNumber
        return np.array([[get(f"{a.incoming}_0"), get(f"{a.incoming}_1")] for a in APPROACHES], dtype=np.float32)

    def brightness(self) -> np.ndarray:
        """Scene light per camera: noon at the start, dusk (about 0.45) at the end."""
        return self.gain * (1.0 - 0.55 * min(self.t / self.duration_s, 1.0))

    def frames(self) -> np.ndarray:
        """Every camera's frame now: uint8 ``[16, 3, H, W]``."""
        v = self.sumo.vehicle
        light = self.brightness()
        out = np.empty((len(APPROACHES), 3, camera.H, camera.W), dtype=np.uint8)
        for i, a in enumerate(APPROACHES):
            seen: list[camera.Vehicle] = []
            for edge, incoming in ((a.incoming, True), (a.outgoing, False)):
                for vid in self.sumo.edge.getLastStepVehicleIDs(edge):
                    pos = v.getLanePosition(vid)
                    seen.append((incoming, v.getLaneIndex(vid), self.lane_len[a.incoming] - pos if incoming else pos,
                                 v.getLength(vid), v.getSpeed(vid), vid))
            out[i] = camera.render(seen, float(light[i]), self.rng)
        return out

    def set_signal(self, junction: str, phase: str, axis: str | None) -> None:
        state = self.states[junction][(phase, axis)]
        if self._last_state.get(junction) != state:
            if phase == "green" and junction in self._last_state:
                self.switches += 1
            self.sumo.trafficlight.setRedYellowGreenState(junction, state)
            self._last_state[junction] = state

    def finish(self) -> dict:
        """Close SUMO; per-vehicle figures from its tripinfo output."""
        self.sumo.close()
        rows = ET.parse(self.tripinfo).getroot().findall("tripinfo")
        waiting = np.array([float(r.get("waitingTime")) for r in rows])
        loss = np.array([float(r.get("timeLoss")) for r in rows])
        delay = np.array([float(r.get("departDelay", 0)) for r in rows])
        done = sum(1 for r in rows if float(r.get("arrival", -1)) >= 0)
        out = {"seed": self.seed, "duration_s": self.duration_s, "vehicles": len(rows), "arrived": done,
               "mean_waiting_s": float(waiting.mean()) if len(rows) else 0.0,
               "mean_time_loss_s": float(loss.mean()) if len(rows) else 0.0,
               "mean_depart_delay_s": float(delay.mean()) if len(rows) else 0.0,
               "phase_switches": self.switches}
        if self._tmp is not None:
            self._tmp.cleanup()
        return out


def axis_queues(per_lane: np.ndarray, junction: str) -> dict[str, float]:
    """Sum of a junction's lane queues per axis (``per_lane``: ``[16, 2]`` in APPROACHES order)."""
    q = {axis: 0.0 for axis in AXES}
    for a, lanes in zip(APPROACHES, per_lane):
        if a.junction == junction:
            q[a.axis] += float(lanes.sum())
    return q


def control(sim: TrafficSim, controllers: dict[str, AxisController], per_lane: np.ndarray) -> None:
    """One control step: every junction's controller sees its queues and sets its light."""
    for j, c in controllers.items():
        sim.set_signal(j, *c.update(sim.t, axis_queues(per_lane, j)))


def simulate(seed: int, duration_s: float, controller: str) -> dict:
    """A whole run without cameras: ``fixed_time``, ``actuated`` (SUMO's programs) or ``ground_truth``
    (longest-queue-first fed by SUMO's exact queues)."""
    sim = TrafficSim(seed, duration_s, "actuated" if controller == "actuated" else "static")
    controllers = {j: AxisController() for j in JUNCTIONS} if controller == "ground_truth" else None
    while not sim.done:
        if controllers:
            control(sim, controllers, sim.queues())
        sim.step()
    out = sim.finish()
    if controllers:
        out["phase_switches"] = sum(c.switches for c in controllers.values())
    return {"controller": controller, **out}


def _call(fn, args, conn) -> None:
    try:
        conn.send(("ok", fn(*args)))
    except BaseException as exc:  # report any failure to the parent, which raises it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


def run_in_process(fn, *args):
    """Start ``fn(*args)`` in a fresh process (libsumo: one simulation per process); ``.get()`` its result."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_call, args=(fn, args, child), daemon=True)
    proc.start()

    class _Result:
        def get(self):
            status, value = parent.recv()
            proc.join()
            if status != "ok":
                raise RuntimeError(f"simulation process failed: {value}")
            return value
    return _Result()


def _serve(conn, seed: int, duration_s: float) -> None:
    sim = TrafficSim(seed, duration_s)
    while True:
        cmd, arg = conn.recv()
        if cmd == "step":                 # arg: signals to set first; reply: frames and ground truth after the step
            for junction, (phase, axis) in arg.items():
                sim.set_signal(junction, phase, axis)
            sim.step()
            conn.send((sim.t, sim.frames(), sim.queues(), sim.done))
        elif cmd == "finish":
            conn.send(sim.finish())
            return


class SimProcess:
    """A :class:`TrafficSim` in a child process, stepped from this one (frames come back each step)."""

    def __init__(self, seed: int, duration_s: float) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, seed, duration_s), daemon=True)
        self._proc.start()

    def step(self, signals: dict[str, tuple[str, str | None]]) -> tuple[float, np.ndarray, np.ndarray, bool]:
        self._conn.send(("step", signals))
        return self._conn.recv()

    def finish(self) -> dict:
        self._conn.send(("finish", None))
        out = self._conn.recv()
        self._proc.join(timeout=10)
        return out
