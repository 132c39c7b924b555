"""The closed loop: cameras -> split pipeline -> controller -> traffic lights, one seed at a time.

Time: the simulation advances in steps of 0.1 s; after every step the 16 cameras'
frames are submitted to the pipeline. Step ``k`` waits until the results of step
``k - lag`` have arrived, and the controller acts on those: the lights always react to
what the cameras saw ``lag`` steps (0.2 s of simulated time) earlier, whatever the
machine's speed, so a run is reproducible, while up to ``lag + 1`` steps (48 frames) are
in flight. Simulated time therefore runs as fast as the pipeline carries 16 cameras x
10 frames per simulated second; the report gives the ratio.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .controller import AxisController
from .sim import APPROACHES, JUNCTIONS, STEP_S, SimProcess, axis_queues

__all__ = ["LoopStats", "run_camera_loop"]


@dataclass
class LoopStats:
    """What one camera-driven run measured at the driver."""

    seed: int
    frames_sent: int = 0
    frames_delivered: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    per_second: list[int] = field(default_factory=list)      # frames delivered in each wall-clock second
    abs_err: list[float] = field(default_factory=list)        # |estimate - truth| per lane, live frames
    order_ok: bool = True
    per_camera: list[int] = field(default_factory=lambda: [0] * len(APPROACHES))   # results delivered per camera
    sim_s: float = 0.0
    wall_s: float = 0.0
    montage: dict = field(default_factory=dict)                # the busiest step: frames, truth, estimates
    traffic: dict = field(default_factory=dict)


def run_camera_loop(pipe, seed: int, duration_s: float, lag: int = 2, on_tick=None, first_source: int = 0) -> LoopStats:
    """Drive one simulation with the controller fed by the pipeline's estimates; returns its stats."""
    cams = len(APPROACHES)
    stats = LoopStats(seed)
    sim = SimProcess(seed, duration_s)
    controllers = {j: AxisController() for j in JUNCTIONS}
    estimate = np.zeros((cams, 2), dtype=np.float32)
    base = {c: pipe.ledger.next_seq.get(first_source + c, 0) for c in range(cams)}
    truth_at: dict[int, np.ndarray] = {}
    frames_at: dict[int, np.ndarray] = {}
    est_at: dict[int, np.ndarray] = {}                 # a step's estimates, filled as its results arrive
    seen_at: dict[int, int] = {}
    expected = dict(base)                     # next seq each camera must deliver (checks order and exactly-once)
    signals: dict = {}
    start = second_start = time.perf_counter()
    delivered_this_second = 0
    step = 0
    done = False

    def take(results) -> None:
        nonlocal delivered_this_second
        for r in results:
            cam = r.source - first_source
            if r.seq != expected[cam]:
                stats.order_ok = False
            stats.per_camera[cam] += 1
            expected[cam] = r.seq + 1
            k = r.seq - base[cam]
            out = r.output.detach().reshape(-1).numpy() if isinstance(r.output, torch.Tensor) else np.zeros(2)
            estimate[cam] = np.clip(out, 0.0, None)
            stats.abs_err.extend(np.abs(estimate[cam] - truth_at[k][cam]).tolist())
            est_at.setdefault(k, np.zeros((cams, 2), dtype=np.float32))[cam] = estimate[cam]
            seen_at[k] = seen_at.get(k, 0) + 1
            if seen_at[k] == cams and truth_at[k].sum() >= stats.montage.get("queued", -1):
                stats.montage = {"queued": float(truth_at[k].sum()), "t_s": (k + 1) * STEP_S, "frames": frames_at[k],
                                 "truth": truth_at[k], "estimate": est_at[k]}
            stats.latencies_ms.append(r.latency_s * 1e3)
            stats.frames_delivered += 1
            delivered_this_second += 1

    while not done:
        t, frames, truth, done = sim.step(signals)
        truth_at[step], frames_at[step] = truth, frames
        for cam in range(cams):
            pipe.submit(first_source + cam, torch.from_numpy(frames[cam:cam + 1]))
        stats.frames_sent += cams
        need = step - lag                      # the controller acts on step k - lag
        while need >= 0 and any(expected[c] <= base[c] + need for c in range(cams)):
            take(pipe.poll(0.02))
        take(pipe.poll(0.0)) if step % 10 == 0 else None
        for k in [k for k in truth_at if k < need - 1]:
            truth_at.pop(k), frames_at.pop(k), est_at.pop(k, None), seen_at.pop(k, None)
        signals = {j: c.update(t, axis_queues(estimate, j)) for j, c in controllers.items()}
        now = time.perf_counter()
        if now - second_start >= 1.0:
            stats.per_second.append(delivered_this_second)
            delivered_this_second, second_start = 0, now
            if on_tick:
                on_tick(stats, t)
        step += 1
    for r in pipe.results():
        take([r])
    stats.per_second.append(delivered_this_second)
    stats.wall_s = time.perf_counter() - start
    stats.sim_s = step * STEP_S
    stats.traffic = {"controller": "camera", **sim.finish(),
                     "phase_switches": sum(c.switches for c in controllers.values())}
    return stats
