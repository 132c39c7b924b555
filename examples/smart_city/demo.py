"""``tierpipe demo``: 16 cameras on a SUMO grid, QueueNet split over camera -> gateway -> edge, closing the loop on the lights.

What runs, in order:

1. QueueNet (trained, shipped weights) is captured and partitioned onto
   ``topologies/smart_city.yaml`` (objective throughput, codecs chosen per link).
2. For every seed, SUMO runs the same traffic under SUMO's fixed-time program, SUMO's
   actuated control, and longest-queue-first fed by SUMO's exact queues (no cameras:
   each in its own process, two at a time).
3. A local Ray pipeline of 21 stage actors (emulated tiers and links) estimates the
   queues from the 16 camera frames of every 0.1 s step, and the same longest-queue-first
   controller sets the lights from those estimates (:mod:`.loop`).
4. ``report.json`` and five PNGs go to ``--out`` (default ``tierpipe-demo/``).

With ``--adapt`` (and ``--conditions FILE``, default :data:`WIFI_DROP`: four cameras' Wi-Fi
falls to 50 kbit/s 10 s in and comes back at 40 s), the pipeline measures its links, re-plans
and switches live; the report gets ``adaptation`` (the conditions, ``plan_switches`` and the
per-second timeline) and ``adaptation.png``. ``--conditions`` without ``--adapt`` shows what
the fixed plan does under the same conditions.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.live import Live
from rich.progress import Progress
from rich.table import Table

from runtime.argtypes import non_negative_int, positive

from .loop import LoopStats, run_camera_loop
from .model import WEIGHTS, load_model
from .plots import write_plots
from .sim import APPROACHES, STEP_S, run_in_process, simulate

__all__ = ["run_demo", "register"]

SAMPLE_FRAMES = Path(__file__).with_name("data") / "sample_frames.npy"
CONTROLLERS = ("fixed_time", "actuated", "ground_truth")
FULL = {"seeds": (1, 2, 3), "duration_s": 45.0}
QUICK = {"seeds": (1,), "duration_s": 15.0}
WIFI_DROP = Path(__file__).with_name("wifi_drop.yaml")


def register(sub) -> None:
    d = sub.add_parser("demo", help="the smart-city traffic demo: 16 SUMO cameras, a split model, closed-loop lights")
    d.add_argument("--quick", action="store_true", help=f"one seed, {QUICK['duration_s']:.0f} simulated s (under a minute)")
    d.add_argument("--seeds", type=non_negative_int, nargs="+", help=f"SUMO seeds (default {FULL['seeds']})")
    d.add_argument("--duration", type=positive, help=f"simulated seconds per seed (default {FULL['duration_s']:.0f})")
    d.add_argument("--lag", type=non_negative_int, default=2, help="steps between a frame and the control action it feeds (default 2)")
    d.add_argument("--out", default="tierpipe-demo", help="report directory (default tierpipe-demo/)")
    d.add_argument("--conditions", metavar="FILE",
                   help="emulated conditions over time (YAML list: {at, link|node, bandwidth|speed|battery})")
    d.add_argument("--adapt", action="store_true",
                   help="re-plan and switch live when the measured links drift (with the shipped Wi-Fi drop "
                        f"{WIFI_DROP.name} unless --conditions names a file)")
    d.set_defaults(func=main)


def main(args) -> int:
    preset = QUICK if args.quick else FULL
    conditions = args.conditions or (str(WIFI_DROP) if args.adapt else None)
    run_demo(Path(args.out), tuple(args.seeds or preset["seeds"]), args.duration or preset["duration_s"], args.lag,
             conditions=conditions, adapt=args.adapt)
    return 0


def _plan(console: Console):
    from partition import Topology, capture, partition

    topo = Topology.load("smart_city")
    model, _ = load_model()
    sample = torch.from_numpy(np.load(SAMPLE_FRAMES))
    with console.status("capturing and partitioning QueueNet onto smart_city..."):
        # analytic per-op costs: the same plan on every machine and every run (a measured capture varies
        # with the load, and with it the codec that wins at the first cut)
        graph = capture(model, (sample[3:4],), timing="analytic")
        plan = partition(graph, topo, "throughput", codec="auto", model_name="queuenet", calibration=calibration_frames(sample))
    return topo, model, plan, graph, sample


def calibration_frames(sample: torch.Tensor) -> list[tuple]:
    """Four of the shipped frames: what lossy codecs are checked on (at the start and when re-planning)."""
    return [(sample[i:i + 1],) for i in range(0, 16, 4)]


def _baselines(seeds, duration_s: float, progress: Progress) -> dict[str, list[dict]]:
    jobs = [(seed, c) for seed in seeds for c in CONTROLLERS]
    task = progress.add_task("SUMO without cameras (fixed time, actuated, true queues)", total=len(jobs))
    out: dict[str, list[dict]] = {c: [] for c in CONTROLLERS}
    for i in range(0, len(jobs), 2):                       # libsumo: one simulation per process; two at a time
        pending = [(c, run_in_process(simulate, seed, duration_s, c)) for seed, c in jobs[i:i + 2]]
        for c, p in pending:
            out[c].append(p.get())
            progress.advance(task)
    return out


def _live_table(stats: LoopStats, sim_t: float, seed: int, duration_s: float, plan: str = "v0") -> Table:
    lat = np.asarray(stats.latencies_ms[-2000:]) if stats.latencies_ms else np.zeros(1)
    table = Table(title=f"camera-driven control, seed {seed}: simulated {sim_t:.0f} / {duration_s:.0f} s")
    for col in ("frames sent", "delivered", "fps (last s)", "p50 ms", "p99 ms", "live MAE / lane", "in order", "plan"):
        table.add_column(col, justify="right")
    table.add_row(str(stats.frames_sent), str(stats.frames_delivered), str(stats.per_second[-1] if stats.per_second else 0),
                  f"{np.percentile(lat, 50):.0f}", f"{np.percentile(lat, 99):.0f}",
                  f"{np.mean(stats.abs_err) if stats.abs_err else 0:.3f}", "yes" if stats.order_ok else "NO", plan)
    return table


def run_demo(out: Path, seeds: tuple[int, ...], duration_s: float, lag: int = 2, console: Console | None = None,
             conditions: str | Path | None = None, adapt: bool = False) -> dict:
    """Run the whole demo; writes ``out/report.json`` and the plots, returns the report.

    ``conditions``: a conditions file the emulated tiers and links follow; ``adapt``: re-plan live.
    """
    from partition.conditions import load_conditions
    from runtime import Pipeline
    from runtime.adapt import Adapter
    from runtime.raystart import quiet_ray

    console = console or Console()
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    topo, model, plan, graph, sample = _plan(console)
    timeline = load_conditions(conditions, topo) if conditions else None       # a bad file fails before SUMO runs
    for table in plan.tables():
        console.print(table)
    with Progress(console=console, transient=True) as progress:
        traffic = _baselines(seeds, duration_s, progress)
    console.print(f"SUMO baselines done for seeds {list(seeds)} ({duration_s:.0f} simulated s each)")
    quiet_ray()
    with console.status(f"starting {sum(t.nodes for t in topo.path)} stage actors (emulated tiers and links)..."):
        t0 = time.perf_counter()
        adapter = Adapter(graph, "throughput", codec="auto", calibration=calibration_frames(sample)) if adapt else False
        pipe = Pipeline(plan, model, topo, emulate=True, conditions=timeline, adapt=adapter, graph=graph)
        pipe.start()
        startup_s = time.perf_counter() - t0
    console.print(f"pipeline up in {startup_s:.1f} s")
    runs: list[LoopStats] = []
    try:
        for seed in seeds:
            with Live(console=console, refresh_per_second=4, transient=True) as live:
                stats = run_camera_loop(pipe, seed, duration_s, lag=lag,
                                        on_tick=lambda s, t, seed=seed: live.update(
                                            _live_table(s, t, seed, duration_s, pipe.plan_label)))
            console.print(_live_table(stats, stats.sim_s, seed, duration_s, pipe.plan_label))
            runs.append(stats)
        pipe_report = pipe.report()
    finally:
        pipe.close()
    traffic["camera"] = [s.traffic for s in runs]
    report = _report(plan, traffic, runs, pipe_report, seeds, duration_s, lag, startup_s)
    if conditions or adapt:
        report["adaptation"] = _adaptation(pipe_report, conditions, adapt, out, console)
    report["demo_wall_s"] = round(time.perf_counter() - started, 1)
    busiest = max(runs, key=lambda s: s.montage.get("queued", -1)).montage
    report["plots"] = write_plots(out, report, [x for s in runs for x in s.latencies_ms],
                                  [x for s in runs for x in s.per_second],
                                  {**busiest, "names": [a.incoming for a in APPROACHES]})
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    console.print(_summary(report))
    console.print(f"report and plots written to {out}/")
    return report


def _adaptation(pipe_report: dict, conditions, adapt: bool, out: Path, console: Console) -> dict:
    """The conditions, the switches and the per-second timeline, printed and plotted (``adaptation.png``)."""
    from runtime.timeline_plot import plot_timeline

    switches = pipe_report["plan_switches"]
    for s in switches:
        console.print(f"plan switch at {s['at_s']:.1f} s -> v{s['version']}"
                      + (f" for {', '.join(s['nodes'])}" if s.get("nodes") else "") + f": {s['reason']} (predicted "
                      f"{s['predicted_fps_before']:.0f} -> {s['predicted_fps_after']:.0f} fps, loaded in "
                      f"{s['switch_s'] or float('nan'):.1f} s)" + (f"; failed: {s['error']}" if s["error"] else ""))
    if adapt and not switches:
        console.print("no plan switch: the measured links and speeds stayed close to the plan's")
    title = f"QueueNet on smart_city, {'adaptive' if adapt else 'fixed plan'} ({Path(conditions).name if conditions else ''})"
    png = plot_timeline(pipe_report, out / "adaptation.png", title=title)
    return {"adapt": adapt, "conditions": str(conditions) if conditions else None, "plan_version": pipe_report["plan_version"],
            "plan_switches": switches, "timeline": pipe_report["timeline"], "plot": png.name}


def _report(plan, traffic, runs: list[LoopStats], pipe_report: dict, seeds, duration_s, lag, startup_s) -> dict:
    lat = np.asarray([x for s in runs for x in s.latencies_ms])
    sent = sum(s.frames_sent for s in runs)
    delivered = sum(s.frames_delivered for s in runs)
    wall = sum(s.wall_s for s in runs)
    sim = sum(s.sim_s for s in runs)
    raw = int(np.prod(plan.inputs[0].shape)) * 1                 # uint8 frame, 1 byte per value
    uplink = pipe_report["links"][0]["bytes_per_frame"]
    held_out = json.loads(WEIGHTS.with_suffix(".json").read_text())
    waiting = {c: float(np.mean([r["mean_waiting_s"] for r in rs])) for c, rs in traffic.items()}
    base = {k: v for k, v in plan.baselines.items() if v is not None}

    def plan_row(cost, measured_bytes=None):
        return {"latency_ms": round(cost.latency_s * 1e3, 2), "uplink_bytes_per_frame": cost.link_bytes[0],
                **({"uplink_bytes_measured": round(measured_bytes, 1)} if measured_bytes is not None else {})}

    report = {
        "cameras": len(APPROACHES), "seeds": list(seeds), "simulated_s_per_seed": duration_s,
        "time": {"step_s": STEP_S, "frames_per_simulated_s": len(APPROACHES) / STEP_S, "lag_steps": lag,
                 "simulated_s": round(sim, 1), "wall_s": round(wall, 1),
                 "simulated_s_per_wall_s": round(sim / wall, 3) if wall else None,
                 "pipeline_startup_s": round(startup_s, 1)},
        "traffic": {"mean_waiting_s": waiting, "runs": traffic,
                    "camera_vs_fixed_time": round(1 - waiting["camera"] / waiting["fixed_time"], 3),
                    "camera_vs_ground_truth": round(waiting["camera"] / waiting["ground_truth"] - 1, 3),
                    "camera_vs_actuated": round(waiting["camera"] / waiting["actuated"] - 1, 3),
                    "phase_switches_camera": sum(r["phase_switches"] for r in traffic["camera"])},
        "pipeline": {"fps": round(delivered / wall, 1) if wall else 0.0, "target_fps": len(APPROACHES) / STEP_S,
                     "latency_ms": {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
                                    "mean": float(lat.mean())},
                     "frames_sent": sent, "frames_delivered": delivered,
                     "delivered_exactly_once_in_order": bool(sent == delivered and all(s.order_ok for s in runs)),
                     "delivered_per_camera": [sum(s.per_camera[c] for s in runs) for c in range(len(APPROACHES))],
                     "uplink_bytes_per_frame": uplink, "raw_bytes_per_frame": raw,
                     "uplink_saving_vs_raw": round(1 - uplink / raw, 3),
                     "links": pipe_report["links"], "tiers": pipe_report["tiers"]},
        "model": {"name": "QueueNet", "mae": held_out["mae_per_lane"], "mae_held_out": held_out,
                  "mae_live": float(np.mean([x for s in runs for x in s.abs_err])), "unit": "halting vehicles per lane"},
        "plan": {"objective": plan.objective, "codecs": list(plan.codecs), "tiers": list(plan.tiers),
                 "stages": {s.tier_name: list(s.nodes) for s in plan.stages},
                 "predicted": plan.predicted.to_json(),
                 "compare": {"split (ours)": plan_row(plan.predicted, uplink),
                             **({"all on camera": plan_row(base["all on device"])} if "all on device" in base else {}),
                             **({"all on edge (raw upload)": plan_row(base["all on edge"])} if "all on edge" in base else {})}},
    }
    report["targets"] = _targets(report)
    return report


def _targets(r: dict) -> list[dict]:
    p, t = r["pipeline"], r["traffic"]
    rows = [("frames/s sustained", p["fps"], ">=", p["target_fps"]),
            ("end-to-end p99 ms (emulated)", p["latency_ms"]["p99"], "<=", 100.0),
            ("uplink saving vs raw upload", p["uplink_saving_vs_raw"], ">=", 0.70),
            ("waiting time saved vs fixed time", t["camera_vs_fixed_time"], ">=", 0.25),
            ("waiting time vs ground-truth control", t["camera_vs_ground_truth"], "<=", 0.10)]
    out = [{"target": name, "value": round(float(v), 3), "goal": f"{op} {goal}",
            "met": bool(v >= goal if op == ">=" else v <= goal)} for name, v, op, goal in rows]
    in_flight = len(APPROACHES) * (r["time"]["lag_steps"] + 1)
    why = {"frames/s sustained": "the 21 stage actors, the driver and SUMO share this machine's cores; each frame "
                                 "costs the pipeline several Ray calls",
           "end-to-end p99 ms (emulated)": f"the loop keeps {in_flight} frames in flight ((lag + 1) steps x 16 cameras) "
                                           f"to sustain 160 frames/s, so by Little's law a frame waits about {in_flight} / fps "
                                           f"= {in_flight / max(p['fps'], 1e-9) * 1e3:.0f} ms behind the others on shared cores; "
                                           "--lag 0 keeps 16 in flight and trades throughput for latency",
           "uplink saving vs raw upload": "the plan's cut and codec decide the bytes on the uplink",
           "waiting time saved vs fixed time": "short horizons favour the program the run starts in",
           "waiting time vs ground-truth control": "estimation errors change the controller's decisions"}
    for row in out:
        if not row["met"]:
            row["why"] = why[row["target"]]
    return out


def _summary(r: dict) -> Table:
    table = Table(title=f"smart-city demo: {r['cameras']} cameras, seeds {r['seeds']}, "
                        f"{r['simulated_s_per_seed']:.0f} simulated s each")
    for col in ("measure", "value", "target", "met"):
        table.add_column(col)
    for c, w in r["traffic"]["mean_waiting_s"].items():
        table.add_row(f"mean waiting s: {c}", f"{w:.2f}", "", "")
    table.add_row("model MAE (held out, per lane)", f"{r['model']['mae']:.3f}", "", "")
    table.add_row("model MAE (live, per lane)", f"{r['model']['mae_live']:.3f}", "", "")
    for row in r["targets"]:
        table.add_row(row["target"], f"{row['value']:.3f}", row["goal"], "yes" if row["met"] else "[red]no[/red]")
    return table
