"""The demo's ``report.json``: traffic per controller over seeds (mean and spread), the pipeline, the model, the plan.

Traffic figures are SUMO's standard ones, from its tripinfo output (:func:`.sim.tripinfo_metrics`):
mean delay per vehicle (``timeLoss``), the same plus the wait to enter the network, mean waiting
time, mean trip time, vehicles arrived, unfinished at the end and never inserted, teleports and
phase switches. Each has a ``_std`` sibling: the standard deviation over seeds.
"""

from __future__ import annotations

import json

import numpy as np
from rich.table import Table

from .model import WEIGHTS

__all__ = ["build_report", "summary_table", "traffic_summary", "verdict", "METRICS", "LABELS"]

METRICS = (
    "mean_delay_s",
    "mean_waiting_s",
    "mean_trip_s",
    "mean_total_delay_s",
    "arrived",
    "unfinished",
    "never_inserted",
    "teleports",
    "phase_switches",
)
_TABLE = (
    "mean_delay_s",
    "mean_total_delay_s",
    "mean_waiting_s",
    "mean_trip_s",
    "arrived",
    "unfinished",
    "never_inserted",
    "phase_switches",
)
TIE = 0.005  # a difference under 0.5% is a tie
LABELS = {
    "fixed_time": "fixed time (the network's program)",
    "actuated": "actuated (SUMO)",
    "max_pressure_truth": "max-pressure, exact queues",
    "greedy_truth": "greedy, exact queues",
    "camera": "cameras + split pipeline",
}


def traffic_summary(runs: dict[str, list[dict]]) -> dict:
    """Per metric, the mean over seeds per controller and (``<metric>_std``) the standard deviation."""
    out: dict = {}
    for metric in METRICS:
        values = {c: [float(r[metric]) for r in rs if r.get(metric) is not None] for c, rs in runs.items()}
        out[metric] = {c: round(float(np.mean(v)), 3) for c, v in values.items() if v}
        out[f"{metric}_std"] = {c: round(float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, 3) for c, v in values.items() if v}
    out["vehicles"] = {c: round(float(np.mean([r["vehicles"] for r in rs])), 1) for c, rs in runs.items()}
    out["runs"] = runs
    return out


def verdict(traffic: dict, controller: str) -> list[str]:
    """Plain sentences: the cameras against the same controller on exact queues, fixed time and actuated.

    A difference under 0.5% is a tie; one within the larger of the two spreads over seeds says so.
    """
    d, s = traffic["mean_delay_s"], traffic["mean_delay_s_std"]
    seeds = len(traffic["runs"]["camera"])
    cam, truth = d["camera"], d[f"{controller}_truth"]
    gap = cam / truth - 1 if truth else 0.0
    name = controller.replace("_", "-")
    spread = f"spread {s['camera']:.1f} s over {seeds} seeds" if seeds > 1 else "one seed: no spread"
    lines = [
        f"Camera-driven {name}: mean delay {cam:.1f} s per vehicle ({spread}), "
        f"{abs(gap):.1%} {'above' if gap >= 0 else 'below'} {name} on exact queues ({truth:.1f} s): "
        + ("within the 10% target." if gap <= 0.10 else "misses the 10% target.")
    ]
    for base in ("fixed_time", "actuated"):
        ref = d[base]
        rel = cam / ref - 1 if ref else 0.0
        noise = seeds > 1 and abs(cam - ref) <= max(s["camera"], s[base])
        within = f", within the seeds' spread (±{max(s['camera'], s[base]):.1f} s)" if noise else ""
        if abs(rel) < TIE:
            lines.append(f"It ties with {LABELS[base]} ({ref:.1f} s).")
        elif rel < 0:
            lines.append(f"It beats {LABELS[base]} ({ref:.1f} s) by {-rel:.0%}{within}.")
        else:
            lines.append(f"It loses to {LABELS[base]} ({ref:.1f} s): {rel:.0%} more delay per vehicle{within}.")
    return lines


def _pipeline(runs, plan, pipe_report: dict) -> dict:
    lat = np.asarray([x for s in runs for x in s.latencies_ms]) if runs else np.zeros(1)
    sent = sum(s.frames_sent for s in runs)
    delivered = sum(s.frames_delivered for s in runs)
    wall = sum(s.wall_s for s in runs)
    raw = int(np.prod(plan.inputs[0].shape))  # uint8 frame, 1 byte per value
    uplink = pipe_report["links"][0]["bytes_per_frame"]
    cams = runs[0].cameras if runs else 0
    return {
        "fps": round(delivered / wall, 1) if wall else 0.0,
        "latency_ms": {
            "p50": round(float(np.percentile(lat, 50)), 1),
            "p99": round(float(np.percentile(lat, 99)), 1),
            "mean": round(float(lat.mean()), 1),
        },
        "frames_sent": sent,
        "frames_delivered": delivered,
        "delivered_exactly_once_in_order": bool(sent == delivered and all(s.order_ok for s in runs)),
        "delivered_per_camera": [sum(s.per_camera[c] for s in runs) for c in range(cams)],
        "uplink_bytes_per_frame": uplink,
        "raw_bytes_per_frame": raw,
        "uplink_saving_vs_raw": round(1 - uplink / raw, 3),
        "links": pipe_report["links"],
        "tiers": pipe_report["tiers"],
    }


def build_report(scenario, config, controller: str, plan, traffic: dict, runs, pipe_report: dict, startup_s: float) -> dict:
    """Everything the demo measured, under the keys the README documents."""
    base = {k: v for k, v in plan.baselines.items() if v is not None}
    held_out = json.loads(WEIGHTS.with_suffix(".json").read_text())
    sim_s = sum(s.sim_s for s in runs)
    wall = sum(s.wall_s for s in runs)
    pipeline = _pipeline(runs, plan, pipe_report)

    def plan_row(cost, measured_bytes=None):
        return {
            "latency_ms": round(cost.latency_s * 1e3, 2),
            "uplink_bytes_per_frame": cost.link_bytes[0],
            **({"uplink_bytes_measured": round(measured_bytes, 1)} if measured_bytes is not None else {}),
        }

    summary = traffic_summary(traffic)
    err = sum(s.err_sum for s in runs)
    lanes = sum(s.err_lanes for s in runs)
    report = {
        "scenario": {**scenario.summary(), "junctions": len(scenario.junctions), "junction_ids": [j.id for j in scenario.junctions]},
        "seeds": list(config.seeds),
        "camera_controller": controller,
        "traffic": summary,
        "verdict": verdict(summary, controller),
        "time": {
            "camera_fps": config.camera_fps,
            "control_step_s": config.control_step_s,
            "lag_s": config.lag_s,
            "min_green_s": config.min_green_s,
            "max_green_s": config.max_green_s,
            "realtime": config.realtime,
            "frames_per_simulated_s": len(scenario.cameras) * config.camera_fps,
            "simulated_s": round(sim_s, 1),
            "wall_s": round(wall, 1),
            "simulated_s_per_wall_s": round(sim_s / wall, 2) if wall else None,
            "waited_for_frames_s": round(sum(s.waited_s for s in runs), 1),
            "pipeline_startup_s": round(startup_s, 1),
        },
        "pipeline": pipeline,
        "model": {
            "name": "QueueNet",
            "unit": held_out.get("unit", "halting vehicles per lane"),
            "mae_heldout": held_out["held_out"]["mae_per_lane"],
            "mae_heldout_by_lane_count": held_out["held_out"]["mae_per_lane_by_lane_count"],
            "mae_live": round(err / lanes, 4) if lanes else None,
            "mae_live_per_seed": {str(s.seed): round(s.mae, 4) for s in runs},
        },
        "plan": {
            "objective": plan.objective,
            "codecs": list(plan.codecs),
            "tiers": list(plan.tiers),
            "stages": {s.tier_name: list(s.nodes) for s in plan.stages},
            "predicted": plan.predicted.to_json(),
            "compare": {
                "split (ours)": plan_row(plan.predicted, pipeline["uplink_bytes_per_frame"]),
                **({"all on camera": plan_row(base["all on device"])} if "all on device" in base else {}),
                **({"all on edge (raw upload)": plan_row(base["all on edge"])} if "all on edge" in base else {}),
            },
        },
    }
    report["targets"] = _targets(report, controller)
    return report


def _targets(r: dict, controller: str) -> list[dict]:
    p, t = r["pipeline"], r["traffic"]["mean_delay_s"]
    gap = t["camera"] / t[f"{controller}_truth"] - 1 if t[f"{controller}_truth"] else 0.0
    rows = [
        ("end-to-end p99 ms (emulated)", p["latency_ms"]["p99"], "<=", 100.0),
        ("uplink saving vs raw upload", p["uplink_saving_vs_raw"], ">=", 0.70),
        ("mean delay vs the same control on exact queues", gap, "<=", 0.10),
    ]
    if r["time"]["realtime"]:  # a live deployment's rate: every frame the cameras take, as they take it
        rows.insert(0, ("frames/s delivered vs the cameras' rate (realtime)", p["fps"] / r["time"]["frames_per_simulated_s"], ">=", 0.99))
    out = [
        {"target": name, "value": round(float(v), 3), "goal": f"{op} {goal}", "met": bool(v >= goal if op == ">=" else v <= goal)}
        for name, v, op, goal in rows
    ]
    why = {
        "frames/s delivered vs the cameras' rate (realtime)": "the pipeline, the driver and SUMO could not keep up with the "
        "cameras on this machine's cores: frames queued or were dropped",
        "end-to-end p99 ms (emulated)": "the stage actors, the driver and SUMO share this machine's cores; frames "
        "queue behind each other when the cameras' frames of a step arrive together",
        "uplink saving vs raw upload": "the plan's cut and codec decide the bytes on the uplink",
        "mean delay vs the same control on exact queues": "estimation errors (and queues beyond the cameras' "
        "102 m view) change the controller's decisions",
    }
    for row in out:
        if not row["met"]:
            row["why"] = why[row["target"]]
    return out


def summary_table(r: dict) -> Table:
    sc = r["scenario"]
    table = Table(
        title=f"{sc['name']}: {sc['junctions']} junctions, {sc['cameras']} cameras, seeds {r['seeds']}, "
        f"simulated {sc['begin_s']:g}-{sc['end_s']:g} s"
    )
    for col in ("controller", "delay s", "with entry wait s", "waiting s", "trip s", "arrived", "unfinished", "never entered", "switches"):
        table.add_column(col, justify="left" if col == "controller" else "right")
    t = r["traffic"]
    for c in t["mean_delay_s"]:
        cells = [f"{t[m][c]:.1f} ± {t[m + '_std'][c]:.1f}" if c in t[m] else "-" for m in _TABLE]
        label = LABELS.get(c, c) + (f" ({r['camera_controller'].replace('_', '-')})" if c == "camera" else "")
        table.add_row(label, *cells)
    return table
