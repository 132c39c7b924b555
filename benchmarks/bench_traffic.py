"""The hour-long traffic comparison: every controller, 3 seeds, on every shipped scenario (or any --scenario).

    python benchmarks/bench_traffic.py                           # every shipped scenario, its hour, seeds 1 2 3
    python benchmarks/bench_traffic.py --scenario my.sumocfg --tls J1 J2 --end 1800
    python benchmarks/bench_traffic.py --camera-fps 1            # every camera every second (5x the frames)

Per scenario it runs the demo (:func:`examples.smart_city.demo_run.run_demo`): the network's fixed-time
program, SUMO's actuated control, max-pressure and greedy on SUMO's exact queues, and the better of
those two fed by the cameras through the split pipeline (emulated tiers), all on the same seeds.
The camera rate defaults to 0.2 frames per camera per simulated second: one frame per control
decision (every 5 s, taken 1 s before it), which is all the controller consumes; ``--camera-fps 1``
streams every second (the CLI's default for --scenario runs) and takes five times as long.

Saves ``benchmarks/results/bench_traffic.json`` (per scenario: junctions, cameras, vehicles, mean
delay per controller with its spread over seeds, the camera run against the same controller on
exact queues, the verdict sentences) and each scenario's full report and plots under
``benchmarks/results/traffic/<scenario>/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import RESULTS, save  # noqa: E402
from examples.smart_city.demo_run import DemoConfig, run_demo  # noqa: E402
from examples.smart_city.scenario import Scenario, shipped_scenarios  # noqa: E402


def row(report: dict) -> dict:
    t = report["traffic"]
    c = report["camera_controller"]
    return {
        "scenario": report["scenario"]["name"],
        "junctions": report["scenario"]["junctions"],
        "cameras": report["scenario"]["cameras"],
        "lanes_per_camera": report["scenario"]["lanes_per_camera"],
        "window_s": [report["scenario"]["begin_s"], report["scenario"]["end_s"]],
        "seeds": report["seeds"],
        "vehicles": t["vehicles"],
        "mean_delay_s": t["mean_delay_s"],
        "mean_delay_s_std": t["mean_delay_s_std"],
        "mean_waiting_s": t["mean_waiting_s"],
        "mean_trip_s": t["mean_trip_s"],
        "arrived": t["arrived"],
        "unfinished": t["unfinished"],
        "camera_controller": c,
        "camera_vs_exact": round(t["mean_delay_s"]["camera"] / t["mean_delay_s"][f"{c}_truth"] - 1, 4),
        "within_10pct_of_exact": t["mean_delay_s"]["camera"] <= 1.10 * t["mean_delay_s"][f"{c}_truth"],
        "verdict": report["verdict"],
        "model_mae_live": report["model"]["mae_live"],
        "pipeline": {
            k: report["pipeline"][k] for k in ("fps", "latency_ms", "frames_sent", "frames_delivered", "delivered_exactly_once_in_order")
        },
        "simulated_s_per_wall_s": report["time"]["simulated_s_per_wall_s"],
        "wall_s": report["demo_wall_s"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", nargs="+", help="a .sumocfg or shipped name (default: every shipped scenario)")
    p.add_argument("--tls", nargs="+", help="traffic lights to control (default: every one)")
    p.add_argument("--begin", type=float, help="simulated start, s (default: the file's own)")
    p.add_argument("--end", type=float, help="simulated end, s (default: the file's own, at most an hour after --begin)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--camera-fps", type=float, default=0.2)
    args = p.parse_args()
    rows = []
    for name in args.scenario or shipped_scenarios():
        sc = Scenario.load(name, tls=args.tls, begin_s=args.begin, end_s=args.end)
        if args.end is None:
            sc = dataclasses.replace(sc, end_s=min(sc.end_s, sc.begin_s + 3600.0))
        out = RESULTS / "traffic" / sc.name
        report = run_demo(out, sc, DemoConfig(seeds=tuple(args.seeds), camera_fps=args.camera_fps))
        rows.append(row(report))
        print(f"{sc.name}: {rows[-1]['verdict'][0]}")
    save("bench_traffic", {"camera_fps": args.camera_fps, "scenarios": rows})


if __name__ == "__main__":
    main()
