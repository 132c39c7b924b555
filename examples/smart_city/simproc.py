"""SUMO in child processes: libsumo allows one simulation per process.

:func:`run_in_process` runs any function (a whole :func:`.sim.simulate` run, a scenario probe) in a
fresh process and ``.get()`` returns its result; :class:`SimProcess` drives a camera-mode
:class:`.sim.TrafficSim` in a child process, advanced step by step from the camera loop's driver.
Failures come back as :class:`.sim.SimulationError` naming the scenario, seed and what was running.
"""

from __future__ import annotations

import multiprocessing as mp

from .scenario import Scenario
from .sim import SimOptions, SimulationError, TrafficSim

__all__ = ["SimProcess", "run_in_process"]


def _call(fn, args, conn) -> None:
    try:
        conn.send(("ok", fn(*args)))
    except BaseException as exc:  # report any failure to the parent, which raises it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


def _describe(args) -> str:
    """``(scenario midtown, seed 1, mode actuated)`` for an error message."""
    parts = [f"scenario {a.name}" if isinstance(a, Scenario) else repr(a) for a in args if not isinstance(a, SimOptions)]
    return f"({', '.join(parts)})"


def run_in_process(fn, *args):
    """Start ``fn(*args)`` in a fresh process (libsumo: one simulation per process); ``.get()`` its result."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_call, args=(fn, args, child), daemon=True)
    proc.start()

    class _Result:
        def get(self):
            try:
                status, value = parent.recv()
            except EOFError:
                proc.join()
                status, value = "error", f"the process exited with code {proc.exitcode} before answering"
            proc.join()
            if status != "ok":
                raise SimulationError(f"{getattr(fn, '__name__', fn)}{_describe(args)} failed: {value}")
            return value

    return _Result()


def _serve(conn, scenario: Scenario, seed: int, options: SimOptions) -> None:
    try:
        sim = TrafficSim(scenario, seed, "camera", options)
        conn.send(("ok", (sim.t, sim.dt)))
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    while True:
        try:
            cmd, arg = conn.recv()
        except EOFError:  # the parent went away
            return
        try:
            if not _answer(conn, sim, cmd, arg):
                return
        except BaseException as exc:  # a Python error here is not SUMO's: the parent raises it, named
            conn.send(_Failed(f"{type(exc).__name__}: {exc}"))
            return


class _Failed(str):
    """What the child sends instead of an answer when the command failed (the error's text)."""


def _answer(conn, sim, cmd: str, arg) -> bool:
    """Carry out one command of the parent's; False when the run is over."""
    if cmd == "advance":  # arg: (until_s, estimates); reply: time, frames, truth, done
        until_s, estimates = arg
        sim.set_estimates(estimates)
        sim.advance(until_s)
        frames, visible, whole = sim.observe()
        conn.send((sim.t, frames, visible, whole, sim.done))
    elif cmd == "snapshot":  # the live view: vehicles, lights, delay so far
        conn.send(sim.snapshot())
    elif cmd == "finish":
        sim.set_estimates(arg or [])
        while not sim.done:
            sim.step()
        conn.send(sim.finish())
        return False
    return True


class SimProcess:
    """A camera-mode :class:`TrafficSim` in a child process, advanced from this one."""

    def __init__(self, scenario: Scenario, seed: int, options: SimOptions | None = None) -> None:
        options = options if options is not None else SimOptions()
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, scenario, seed, options), daemon=True)
        self._proc.start()
        self._name = f"scenario {scenario.name}, seed {seed}"
        status, value = self._recv("starting")
        if status != "ok":
            raise SimulationError(f"SUMO did not start for scenario {scenario.name}, seed {seed}: {value}")
        self.t, self.dt = value

    def advance(self, until_s: float, estimates: list) -> tuple:
        """Hand over new camera results, simulate up to ``until_s``; returns
        ``(t, frames, visible, whole, done)`` at that time."""
        self._conn.send(("advance", (until_s, estimates)))
        out = self._recv(f"simulating up to {until_s:g} s")
        self.t = out[0]
        return out

    def snapshot(self) -> dict:
        """:meth:`TrafficSim.snapshot` of the simulation in the child process (for the live view)."""
        self._conn.send(("snapshot", None))
        return self._recv("taking a snapshot for the view")

    def finish(self, estimates: list | None = None) -> dict:
        self._conn.send(("finish", estimates))
        out = self._recv("finishing the run")
        self._proc.join(timeout=10)
        return out

    def close(self) -> None:
        """Stop the child process (a run that ended early: a stall, Ctrl-C); harmless after :meth:`finish`."""
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout=5)
        self._conn.close()

    def _recv(self, doing: str):
        try:
            out = self._conn.recv()
        except EOFError:
            self._proc.join(timeout=5)
            raise SimulationError(
                f"SUMO ({self._name}) exited with code {self._proc.exitcode} while {doing}; "
                "run the same scenario and seed with `sumo -c ...` to see SUMO's own message"
            ) from None
        if isinstance(out, _Failed):
            self._proc.join(timeout=5)
            raise SimulationError(f"the simulation ({self._name}) failed while {doing}: {out}")
        return out
