"""The closed loop: cameras -> split pipeline -> controller -> traffic lights, one seed at a time.

Three clocks, decoupled:

- SUMO's step (the scenario's ``step-length``, 1 s by default);
- the cameras: every camera takes a frame every ``1 / camera_fps`` simulated seconds, timed so
  that a frame is taken ``lag_s`` before each control decision;
- the controllers: they decide every ``control_step_s`` (5 s) on the latest estimates from frames
  taken at least ``lag_s`` earlier, and follow yellow and all-red at every step.

Simulated time waits only for frames a decision needs: before SUMO passes a decision at ``T``,
every camera's results up to ``T - lag_s`` must be in; the frames after them stay in flight
while SUMO runs on. A run is therefore reproducible whatever the machine's speed, and runs as
fast as the pipeline carries ``cameras x camera_fps`` frames per simulated second.

``realtime=True`` paces simulated time to the wall clock instead (a live deployment): nothing
waits; a decision uses whatever results have arrived, so the pipeline's real latency is the lag.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .scenario import Scenario
from .sim import SimOptions, SimProcess

__all__ = ["LoopStats", "run_camera_loop", "frame_times"]

_EPS = 1e-6


@dataclass
class LoopStats:
    """What one camera-driven run measured at the driver."""

    seed: int
    cameras: int
    frames_sent: int = 0
    frames_delivered: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    per_second: list[int] = field(default_factory=list)      # frames delivered in each wall-clock second
    err_sum: float = 0.0                                      # |estimate - visible truth| over present lanes
    err_lanes: int = 0
    order_ok: bool = True
    per_camera: list[int] = field(default_factory=list)       # results delivered per camera
    sim_s: float = 0.0
    wall_s: float = 0.0
    waited_s: float = 0.0                                     # wall time SUMO waited for results a decision needed
    montage: dict = field(default_factory=dict)               # the busiest frame set: frames, truth, estimates
    trace: list[tuple[float, float, float, float]] = field(default_factory=list)   # junction 0: t, estimated, visible, whole
    traffic: dict = field(default_factory=dict)

    @property
    def mae(self) -> float:
        return self.err_sum / self.err_lanes if self.err_lanes else 0.0


def frame_times(begin_s: float, end_s: float, camera_fps: float, control_step_s: float, lag_s: float) -> np.ndarray:
    """When the cameras take their frames: every ``1 / camera_fps`` s, ``lag_s`` before each decision."""
    period = 1.0 / camera_fps
    offset = (control_step_s - lag_s) % period
    first = begin_s + (offset if offset > _EPS else period)
    return np.arange(first, end_s - _EPS, period)


def run_camera_loop(pipe, scenario: Scenario, seed: int, options: SimOptions, camera_fps: float = 1.0,
                    realtime: bool = False, on_tick=None, first_source: int = 0) -> LoopStats:
    """Drive one simulation with its controllers fed by the pipeline's estimates; returns its stats."""
    cams = len(scenario.cameras)
    lanes = np.array(scenario.lanes_per_camera)
    present = np.arange(5)[None, :] < lanes[:, None]                     # [C, 5]
    trace_cams = [i for i, a in enumerate(scenario.cameras) if a.junction == scenario.junctions[0].id]
    stats = LoopStats(seed, cams, per_camera=[0] * cams)
    sim_options = options if not realtime else SimOptions(**{**options.__dict__, "lag_s": 0.0})
    sim = SimProcess(scenario, seed, sim_options)
    times = frame_times(scenario.begin_s, scenario.end_s, camera_fps, options.control_step_s, options.lag_s)
    base = {c: pipe.ledger.next_seq.get(first_source + c, 0) for c in range(cams)}
    expected = dict(base)                     # next seq each camera must deliver (checks order and exactly-once)
    truth_at: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    frames_at: dict[int, np.ndarray] = {}
    est_at: dict[int, np.ndarray] = {}
    seen_at: dict[int, int] = {}
    updates: list[tuple[int, float, np.ndarray]] = []
    start = second_start = time.perf_counter()
    delivered_this_second = 0

    def take(results) -> None:
        nonlocal delivered_this_second
        for r in results:
            cam = r.source - first_source
            if r.seq != expected[cam]:
                stats.order_ok = False
            expected[cam] = r.seq + 1
            stats.per_camera[cam] += 1
            k = r.seq - base[cam]
            est = np.clip(r.output.detach().reshape(-1).float().numpy(), 0.0, None) if isinstance(r.output, torch.Tensor) \
                else np.zeros(5, dtype=np.float32)
            est = np.where(present[cam], est, 0.0).astype(np.float32)
            updates.append((cam, float(times[k]), est))
            visible, _ = truth_at[k]
            stats.err_sum += float(np.abs(est - visible[cam])[present[cam]].sum())
            stats.err_lanes += int(lanes[cam])
            est_at.setdefault(k, np.zeros((cams, 5), dtype=np.float32))[cam] = est
            seen_at[k] = seen_at.get(k, 0) + 1
            if seen_at[k] == cams:                             # the whole frame set is in
                visible, whole = truth_at.pop(k)
                frames = frames_at.pop(k)
                stats.trace.append((float(times[k]), float(est_at[k][trace_cams].sum()),
                                    float(visible[trace_cams].sum()), float(whole[trace_cams].sum())))
                if visible.sum() >= stats.montage.get("queued", -1):
                    stats.montage = {"queued": float(visible.sum()), "t_s": float(times[k]), "frames": frames,
                                     "truth": visible, "estimate": est_at[k], "lanes": lanes.tolist()}
                est_at.pop(k)
                seen_at.pop(k)
            stats.latencies_ms.append(r.latency_s * 1e3)
            stats.frames_delivered += 1
            delivered_this_second += 1

    def delivered_through(k: int) -> bool:
        return all(expected[c] > base[c] + k for c in range(cams))

    def tick() -> None:
        nonlocal delivered_this_second, second_start
        now = time.perf_counter()
        if now - second_start >= 1.0:
            stats.per_second.append(delivered_this_second)
            delivered_this_second, second_start = 0, now
            if on_tick:
                on_tick(stats, sim.t)

    for k, t_frame in enumerate(times):
        if realtime:
            wait = start + (t_frame - scenario.begin_s) - time.perf_counter()
            take(pipe.poll(max(wait, 0.0))) if wait > 0 else None
            while start + (t_frame - scenario.begin_s) > time.perf_counter():
                take(pipe.poll(0.005))
        else:
            need = _needed_frame(times, sim.t, t_frame, scenario.begin_s, options)
            waited = time.perf_counter()
            while need >= 0 and not delivered_through(need):
                take(pipe.poll(0.02))
            stats.waited_s += time.perf_counter() - waited
        take(pipe.poll(0.0))
        t, frames, visible, whole, _, _ = sim.advance(float(t_frame), updates)
        updates = []
        truth_at[k], frames_at[k] = (visible, whole), frames
        for cam in range(cams):
            pipe.submit(first_source + cam, torch.from_numpy(frames[cam:cam + 1]))
        stats.frames_sent += cams
        tick()
    for r in pipe.results():
        take([r])
    stats.traffic = {**sim.finish(updates), "mode": "camera", "controller": options.controller}
    stats.per_second.append(delivered_this_second)
    stats.wall_s = time.perf_counter() - start
    stats.sim_s = scenario.end_s - scenario.begin_s
    return stats


def _needed_frame(times: np.ndarray, now_s: float, until_s: float, begin_s: float, options: SimOptions) -> int:
    """The last frame index whose results a decision in ``[now_s, until_s)`` needs (-1: none)."""
    step = options.control_step_s
    k_first = np.ceil((now_s - begin_s) / step - _EPS)
    decisions = begin_s + step * np.arange(k_first, np.ceil((until_s - begin_s) / step - _EPS))
    if not len(decisions):
        return -1
    return int(np.searchsorted(times, decisions[-1] - options.lag_s + _EPS)) - 1
