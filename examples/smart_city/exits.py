"""The demo's camera exit (``tierpipe demo --exits``): a head on QueueNet's ``down`` block, which the camera
runs in the default plan, answers the frames it predicts it gets right, and only the others go upstream.

- **Data**: frames of the scenario itself rendered from a SUMO run under actuated control with a seed
  the evaluation does not use (every ``every_s`` simulated seconds, every camera; as in training, most
  empty frames are dropped, so the calibration is a busier mix than the live stream). Half train the
  head, half are held out: the held-out error is the one the report gives.
- **Rule**: ``predicted_error``: the head predicts the halting vehicles per lane and its own mean absolute
  error; a frame exits when that prediction is at most the threshold.
- **Plan**: the default plan's cut stays (the camera's compute sets the throughput); the partitioner
  chooses, with the codecs, whether the exit is live and its threshold for the least bytes on the links
  per frame, within ``max_error`` (mean absolute difference from the full model, vehicles per lane).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .scenario import Scenario
from .simproc import run_in_process

__all__ = ["EXIT_POINT", "CALIBRATION_SEED", "calibration_frames", "camera_exit", "exit_plan"]

EXIT_POINT = "down"
CALIBRATION_SEED = 1000  # not an evaluation seed
SHADOW_SHARE = 0.1  # the share of live frames the full model also sees (the report's exits.agreement.shadow)


def calibration_frames(scenario: Scenario, every_s: float = 5.0, seed: int = CALIBRATION_SEED) -> np.ndarray:
    """Frames ``[N, 3, H, W]`` uint8 of ``scenario`` from a SUMO run under actuated control, in its own process."""
    from .train import render_run

    frames, _, _ = run_in_process(render_run, scenario, seed, "actuated", every_s).get()
    return frames


def camera_exit(model, frames: np.ndarray, steps: int = 600, seed: int = 0):
    """The exit model (head trained on half of ``frames``) and its calibration on the other half."""
    from partition.exit_calib import calibrate
    from partition.exit_train import attach

    x = torch.from_numpy(frames)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    train, held = x[order[: len(x) // 2]], x[order[len(x) // 2 :]]
    em = attach(model, [EXIT_POINT], train, rule="predicted_error", steps=steps, seed=seed)
    return em, calibrate(em, held)


def exit_plan(graph, topo, plan, em, calibration, max_error: float, sample: torch.Tensor):
    """``plan``'s cut with the exit chosen (live or not, threshold) and the codecs, for the least link bytes."""
    from partition import partition
    from partition.exit_calib import ExitBudget
    from partition.exit_choice import exit_candidates

    from .demo_run import calibration_frames as codec_frames

    pins = dict(plan.assignment)
    candidates = exit_candidates(em, calibration, ExitBudget(max_error=max_error))
    chosen = partition(
        graph, topo, "bytes", codec="auto", pins=pins, model_name="queuenet", calibration=codec_frames(sample), exits=candidates
    )
    return dataclasses.replace(chosen, objective=f"bytes, cut of the {plan.objective} plan")


def run_with_exits(scenario, config, controller, topo, model, graph, plan, sample, report: dict, console) -> dict:
    """Train and calibrate the camera exit, plan it, run the camera-driven loop again with it, and compare
    with the run without exits (``report``): the ``exits`` section of ``report.json``."""
    import time

    from runtime.shadow import ShadowCheck

    from .demo_run import camera_runs
    from .report import _pipeline, traffic_summary

    start = time.perf_counter()
    with console.status("rendering calibration frames and training the camera exit..."):
        frames = calibration_frames(scenario)
        em, cal = camera_exit(model, frames)
        chosen = exit_plan(graph, topo, plan, em, cal, config.exit_error, sample)
    train_s = time.perf_counter() - start
    e = chosen.exits
    live = ", ".join(f"{x.name} on {chosen.tiers[x.tier]}, predicted error <= {x.threshold:.3g}" for x in e.live) or "none"
    console.print(
        f"camera exit: {live}; calibrated on {cal.frames} held-out frames (seed {CALIBRATION_SEED}): answers on the camera "
        f"{e.rate_by_tier[0]:.0%}, mean error vs the full model {e.quality:.4f} (budget {e.bound:g}); predicted uplink "
        f"{chosen.predicted.link_bytes[0]} B/frame ({e.link_bytes_without[0]} B without the exit), codecs {list(chosen.codecs)}"
    )
    shadow = ShadowCheck(em, SHADOW_SHARE, "error")  # the full model beside the pipeline on a tenth of the frames
    runs, pipe_report, startup_s = camera_runs(chosen, em, topo, graph, scenario, config, controller, console, shadow=shadow)
    pipeline = _pipeline(runs, chosen, pipe_report)
    delay = traffic_summary({"camera": [s.traffic for s in runs]})["mean_delay_s"]["camera"]
    without = report["traffic"]["mean_delay_s"]["camera"]
    err, lanes = sum(s.err_sum for s in runs), sum(s.err_lanes for s in runs)
    measured = pipe_report.get("exits") or {}
    return {
        "live": [x.to_json() for x in e.live],
        "plan": {
            "objective": chosen.objective,
            "codecs": list(chosen.codecs),
            "predicted_uplink_bytes_per_frame": chosen.predicted.link_bytes[0],
        },
        "rate_by_tier": measured.get("rate_by_tier", {t: (1.0 if t == chosen.tiers[-1] else 0.0) for t in chosen.tiers}),
        "predicted_rate_by_tier": dict(zip(chosen.tiers, e.rate_by_tier)),
        "agreement": {
            "kind": e.kind,
            "unit": "mean |exit answer - full model|, halting vehicles per lane (all 5 outputs)",
            "bound": e.bound,
            "calibrated_held_out": round(e.quality, 4),
            "frames": cal.frames,
            "seed": CALIBRATION_SEED,
            "shadow": shadow.summary(),  # live: delivered results against the full model on a sampled share
        },
        "uplink_bytes_per_frame": pipeline["uplink_bytes_per_frame"],
        "uplink_bytes_per_frame_without": report["pipeline"]["uplink_bytes_per_frame"],
        "raw_bytes_per_frame": pipeline["raw_bytes_per_frame"],
        "uplink_saving_vs_raw": pipeline["uplink_saving_vs_raw"],
        "mae_live": round(err / lanes, 4) if lanes else None,
        "mae_live_without": report["model"]["mae_live"],
        "mean_delay_s_camera": delay,
        "mean_delay_s_camera_without": without,
        "delay_change": round(delay / without - 1, 4) if without else None,
        "fps": pipeline["fps"],
        "latency_ms": pipeline["latency_ms"],
        "delivered_exactly_once_in_order": pipeline["delivered_exactly_once_in_order"],
        "frames_checked": pipeline["frames_delivered"],
        "links": pipeline["links"],
        "train_and_plan_s": round(train_s, 1),
        "pipeline_startup_s": round(startup_s, 1),
    }
