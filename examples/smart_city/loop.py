"""The closed loop: cameras -> split pipeline -> controller -> traffic lights, one seed at a time.

Three clocks, decoupled:

- SUMO's step (the scenario's ``step-length``, 1 s by default);
- the controllers: they decide every ``control_step_s`` (5 s) from the window's start
  (:func:`.sim.decision_times`) and follow yellow and all-red at every step in between;
- the cameras: every camera takes ``control_step_s x camera_fps`` frames per decision (a whole
  number), evenly spaced, the last one ``lag_s`` before the decision; times fall on SUMO's steps.

A decision at grid time ``G`` uses, per camera, the latest estimate from a frame taken at or before
``G - lag_s``. Simulated time waits only for frames a decision needs: before SUMO passes ``G``, every
camera's results up to ``G - lag_s`` must be in; the frames after them stay in flight while SUMO
runs on. A run is therefore reproducible whatever the machine's speed, and runs as fast as the
pipeline carries ``cameras x camera_fps`` frames per simulated second.

``realtime=True`` paces simulated time to the wall clock instead (a live deployment): nothing
waits, and a decision at ``G`` uses the results that had *arrived* by then (each is stamped with
the simulated time of its arrival), so the pipeline's real latency is the lag.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from partition.errors import TierpipeError
from runtime.errors import PipelineError

from .camera import MAX_LANES
from .scenario import Scenario
from .sim import SimOptions, decision_times
from .simproc import SimProcess

__all__ = ["LoopStats", "FrameBook", "run_camera_loop", "frame_times", "needed_frame", "check_rates"]

_EPS = 1e-6
STALL_S = 120.0  # no result for this long while a decision waits: the pipeline is stuck


@dataclass
class LoopStats:
    """What one camera-driven run measured at the driver."""

    seed: int
    cameras: int
    frames_sent: int = 0
    frames_delivered: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    per_second: list[int] = field(default_factory=list)  # frames delivered in each wall-clock second
    err_sum: float = 0.0  # |estimate - visible truth| over present lanes
    err_lanes: int = 0
    order_ok: bool = True
    per_camera: list[int] = field(default_factory=list)  # results delivered per camera
    sim_s: float = 0.0
    wall_s: float = 0.0
    waited_s: float = 0.0  # wall time SUMO waited for results a decision needed
    montage: dict = field(default_factory=dict)  # the busiest frame set: frames, truth, estimates
    trace: list[tuple[float, float, float, float]] = field(default_factory=list)  # junction 0: t, estimated, visible, whole
    traffic: dict = field(default_factory=dict)

    @property
    def mae(self) -> float:
        return self.err_sum / self.err_lanes if self.err_lanes else 0.0


def check_rates(camera_fps: float, control_step_s: float, lag_s: float) -> None:
    """A whole number of frames per decision and a lag that is not negative; TierpipeError naming the flags."""
    per = camera_fps * control_step_s
    if lag_s < 0:
        raise TierpipeError(f"--lag {lag_s:g}: a decision cannot use a frame from its future; give 0 or more seconds")
    if per < 1 - _EPS or abs(per - round(per)) > 1e-6:
        ok = ", ".join(f"{k / control_step_s:g}" for k in (1, 2, 3, 5))
        raise TierpipeError(
            f"--camera-fps {camera_fps:g} with --control-step {control_step_s:g} gives {per:g} frames per "
            f"decision; give a rate with a whole number, at least 1 (e.g. {ok})"
        )


def frame_times(begin_s: float, end_s: float, camera_fps: float, control_step_s: float, lag_s: float, step_s: float = 1.0) -> np.ndarray:
    """When the cameras take their frames: every ``1 / camera_fps`` s, the last of each decision's ``lag_s``
    before it, moved to SUMO's next step where they fall between steps."""
    check_rates(camera_fps, control_step_s, lag_s)
    period = 1.0 / camera_fps
    offset = (control_step_s - lag_s) % period
    first = begin_s + (offset if offset > _EPS else period)
    raw = np.arange(first, end_s - _EPS, period)
    snapped = begin_s + np.ceil((raw - begin_s) / step_s - _EPS) * step_s
    return np.unique(snapped[snapped < end_s - _EPS])


def needed_frame(times: np.ndarray, until_s: float, begin_s: float, options: SimOptions) -> int:
    """The last frame index whose results the decisions before ``until_s`` need (-1: none)."""
    grid = decision_times(begin_s, until_s, options.control_step_s)
    if not len(grid):
        return -1
    return int(np.searchsorted(times, grid[-1] - options.lag_s + _EPS)) - 1


class FrameBook:
    """Delivery bookkeeping of one run, without Ray: which frame each result is, order and exactly-once per camera,
    the estimate errors, and a frame set's truth until all its results are in.

    >>> book = FrameBook(cameras=2, lanes=[1, 2], base_seq={0: 10, 1: 0})
    >>> book.sent(0, 4.0, frames=None, visible=np.zeros((2, 5)), whole=np.zeros((2, 5)))
    >>> book.take(camera=1, seq=0, output=torch.tensor([[1.0, 2.0, 9.0, 9.0, 9.0]]))   # lanes beyond 2 masked
    (0, array([1., 2., 0., 0., 0.], dtype=float32))
    >>> book.complete
    []
    """

    def __init__(self, cameras: int, lanes: list[int], base_seq: dict[int, int], trace_cameras: list[int] = ()) -> None:
        self.cameras = cameras
        self.lanes = np.asarray(lanes)
        self.present = np.arange(MAX_LANES)[None, :] < self.lanes[:, None]  # [C, 5]
        self.base = dict(base_seq)
        self.expected = dict(base_seq)  # next seq each camera must deliver
        self.delivered = [0] * cameras
        self.order_ok = True
        self.err_sum, self.err_lanes = 0.0, 0
        self.trace_cameras = list(trace_cameras)
        self.stamps: list[float] = []  # frame index -> simulated time it was taken
        self._pending: dict[int, dict] = {}  # frame index -> frames, truth, estimates, results seen
        self.complete: list[dict] = []  # frame sets whose results are all in (taken by the caller)

    def sent(self, k: int, stamp_s: float, frames, visible: np.ndarray, whole: np.ndarray) -> None:
        """Frame set ``k`` (one frame per camera) was taken at ``stamp_s`` and submitted."""
        assert k == len(self.stamps), "frame sets are sent in order"
        self.stamps.append(stamp_s)
        self._pending[k] = {
            "frames": frames,
            "visible": visible,
            "whole": whole,
            "seen": 0,
            "estimate": np.zeros((self.cameras, MAX_LANES), dtype=np.float32),
        }

    def take(self, camera: int, seq: int, output) -> tuple[int, np.ndarray]:
        """One result: returns its frame index and the estimate per lane (absent lanes 0)."""
        if not isinstance(output, torch.Tensor) or output.numel() < MAX_LANES:
            raise PipelineError(
                f"camera {camera}, frame {seq}: the model returned {type(output).__name__} "
                f"{tuple(getattr(output, 'shape', ()))}, expected a tensor of {MAX_LANES} queue estimates"
            )
        if seq != self.expected[camera]:
            self.order_ok = False
        self.expected[camera] = seq + 1
        self.delivered[camera] += 1
        k = seq - self.base[camera]
        est = np.clip(output.detach().reshape(-1)[:MAX_LANES].float().numpy(), 0.0, None)
        est = np.where(self.present[camera], est, 0.0).astype(np.float32)
        slot = self._pending[k]
        self.err_sum += float(np.abs(est - slot["visible"][camera])[self.present[camera]].sum())
        self.err_lanes += int(self.lanes[camera])
        slot["estimate"][camera] = est
        slot["seen"] += 1
        if slot["seen"] == self.cameras:
            self.complete.append({"k": k, "t_s": self.stamps[k], **self._pending.pop(k)})
        return k, est

    def through(self, k: int) -> bool:
        """Every camera has delivered frame sets ``0..k``."""
        return all(self.expected[c] > self.base[c] + k for c in range(self.cameras))

    def missing(self, k: int) -> list[tuple[int, int]]:
        """(camera, seq) of the first result each lagging camera still owes up to frame set ``k``."""
        return [(c, self.expected[c]) for c in range(self.cameras) if self.expected[c] <= self.base[c] + k]


def run_camera_loop(
    pipe,
    scenario: Scenario,
    seed: int,
    options: SimOptions,
    camera_fps: float = 1.0,
    realtime: bool = False,
    on_tick=None,
    first_source: int = 0,
    on_view=None,
    shadow=None,
) -> LoopStats:
    """Drive one simulation with its controllers fed by the pipeline's estimates; returns its stats.

    ``on_tick(stats, sim_t)`` is called once a wall-clock second (the live table); ``on_view(stats, sim,
    latest)`` as often as the loop turns (the live page, which sends at its own rate), with the
    simulation (:class:`~.simproc.SimProcess`, for :meth:`~.simproc.SimProcess.snapshot`) and the latest
    complete frame set (frames, what the cameras saw, their estimates). ``shadow``: a
    :class:`~runtime.shadow.ShadowCheck` offered every frame (keyed by camera and sequence number)."""
    cams = len(scenario.cameras)
    stats = LoopStats(seed, cams)
    sim = SimProcess(scenario, seed, dataclasses.replace(options, lag_s=0.0) if realtime else options)
    try:
        times = frame_times(scenario.begin_s, scenario.end_s, camera_fps, options.control_step_s, options.lag_s, sim.dt)
        trace = [i for i, a in enumerate(scenario.cameras) if a.junction == scenario.junctions[0].id]
        book = FrameBook(cams, scenario.lanes_per_camera, {c: pipe.ledger.next_seq.get(first_source + c, 0) for c in range(cams)}, trace)
        updates: list[tuple[int, float, np.ndarray]] = []
        start = second_start = time.perf_counter()
        delivered_this_second = 0

        latest: dict | None = None  # the newest frame set every camera has delivered (for on_view)

        def take(results) -> None:
            nonlocal delivered_this_second, latest
            for r in results:
                cam = r.source - first_source
                k, est = book.take(cam, r.seq, r.output)
                if shadow is not None:
                    shadow.check((cam, r.seq), r.output)
                # what the simulation may use it from: the frame's time, or (realtime) the simulated time it arrived
                stamp = scenario.begin_s + (time.perf_counter() - start) if realtime else book.stamps[k]
                updates.append((cam, stamp, est))
                stats.latencies_ms.append(r.latency_s * 1e3)
                stats.frames_delivered += 1
                delivered_this_second += 1
            for done in book.complete:
                latest = done
                visible, est = done["visible"], done["estimate"]
                stats.trace.append((done["t_s"], float(est[trace].sum()), float(visible[trace].sum()), float(done["whole"][trace].sum())))
                if visible.sum() >= stats.montage.get("queued", -1):
                    stats.montage = {
                        "queued": float(visible.sum()),
                        "t_s": done["t_s"],
                        "frames": done["frames"],
                        "truth": visible,
                        "estimate": est,
                        "lanes": book.lanes.tolist(),
                    }
            book.complete.clear()

        def wait_for(need: int) -> None:
            waited = last = time.perf_counter()
            while need >= 0 and not book.through(need):
                before = stats.frames_delivered
                take(pipe.poll(0.02))
                if on_view:
                    on_view(stats, sim, latest)
                now = time.perf_counter()
                if stats.frames_delivered > before:
                    last = now
                elif now - last > STALL_S:
                    raise PipelineError(
                        f"{scenario.name}, seed {seed}: no result for {STALL_S:.0f} s while a decision "
                        f"waits for (camera, frame) {book.missing(need)}; per-stage state: {pipe.report()['tiers']}"
                    )
            stats.waited_s += time.perf_counter() - waited

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
                while start + (t_frame - scenario.begin_s) > time.perf_counter():
                    take(pipe.poll(min(0.01, max(start + t_frame - scenario.begin_s - time.perf_counter(), 0.0))))
            else:
                wait_for(needed_frame(times, float(t_frame), scenario.begin_s, options))
            take(pipe.poll(0.0))
            t, frames, visible, whole, _ = sim.advance(float(t_frame), updates)
            if on_view:
                on_view(stats, sim, latest)
            updates = []
            book.sent(k, t, frames, visible, whole)
            for cam in range(cams):
                frame = torch.from_numpy(frames[cam : cam + 1])
                if shadow is not None:  # block sources: frame set k is sequence number base + k
                    shadow.offer((cam, book.base[cam] + k), (frame,))
                pipe.submit(first_source + cam, frame)
            stats.frames_sent += cams
            tick()
        for r in pipe.results():
            take([r])
        stats.traffic = {**sim.finish(updates), "mode": "camera", "controller": options.controller}
        stats.per_second.append(delivered_this_second)
        stats.order_ok, stats.per_camera = book.order_ok, list(book.delivered)
        stats.err_sum, stats.err_lanes = book.err_sum, book.err_lanes
        stats.wall_s = time.perf_counter() - start
        stats.sim_s = scenario.end_s - scenario.begin_s
        return stats
    finally:
        sim.close()  # a run that ended early (a stall, Ctrl-C) leaves no SUMO process behind
