"""``tierpipe demo``: cameras on every approach of a SUMO city, QueueNet split over camera -> gateway -> edge,
closing the loop on the traffic lights.

What runs, in order:

1. The scenario is read from SUMO's files (:mod:`.scenario`): the shipped ``midtown`` by default,
   or any ``--scenario FILE.sumocfg`` / ``--net --routes``. The topology is generated from it (one
   camera per approach, one gateway per junction, one edge server) and written to ``--out``.
2. QueueNet (trained, shipped weights) is captured and partitioned onto that topology.
3. For every seed, SUMO runs the same demand under the network's own fixed-time program, SUMO's
   actuated control, and max-pressure and greedy control fed by SUMO's exact queues (each run in
   its own process, two at a time). The better of the two on exact queues drives the cameras'
   run (``--controller`` to choose).
4. A local Ray pipeline (emulated tiers and links) estimates the queues from every camera's frames
   and that controller sets the lights from the estimates (:mod:`.loop`).
5. ``report.json``, ``topology.yaml`` and the plots go to ``--out`` (default ``tierpipe-demo/``).

With ``--adapt`` (and ``--conditions FILE``; by default the cameras of the first junction lose
their Wi-Fi, 20 Mbit/s -> 50 kbit/s, 10 s into the stream and get it back at 40 s), the pipeline
measures its links, re-plans and switches live.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from runtime.argtypes import add_view_args, non_negative, non_negative_int, positive

__all__ = ["register", "main", "FULL", "QUICK"]

# the no-argument demo: 3 seeds of 20 simulated minutes with one frame per camera per 5 s decision, what the
# controller consumes (under 3 minutes here; --camera-fps 1 streams every second: about 7 minutes);
# --scenario runs the file's own window at 1 fps
FULL = {"seeds": (1, 2, 3), "end_s": 1200.0, "camera_fps": 0.2}
QUICK = {"seeds": (1,), "end_s": 240.0, "camera_fps": 1.0}
CAMERA_FPS = 1.0
REALTIME_FPS = 10.0  # --realtime: a live deployment's camera rate


def register(sub) -> None:
    from . import DEFAULT_SCENARIO

    d = sub.add_parser("demo", help="the smart-city traffic demo: SUMO cameras, a split model, closed-loop lights")
    d.add_argument(
        "--scenario",
        metavar="FILE|NAME",
        help=f"a SUMO .sumocfg, or a shipped scenario's name (default {DEFAULT_SCENARIO}: {FULL['end_s']:.0f} simulated s of it)",
    )
    d.add_argument("--net", metavar="FILE.net.xml", help="a SUMO network (with --routes) instead of --scenario")
    d.add_argument("--routes", metavar="FILE.rou.xml", nargs="+", help="route files for --net")
    d.add_argument("--begin", type=float, help="simulated start, s (default: the file's own window)")
    d.add_argument("--end", type=float, help="simulated end, s (default: the file's own window)")
    d.add_argument("--tls", nargs="+", metavar="ID", help="traffic lights to control (default: every one)")
    d.add_argument(
        "--quick", action="store_true", help=f"one seed, {QUICK['end_s']:.0f} simulated s at 1 frame per camera per s (about 1.5 minutes)"
    )
    d.add_argument("--seeds", type=non_negative_int, nargs="+", help=f"SUMO seeds (default {list(FULL['seeds'])})")
    d.add_argument(
        "--camera-fps",
        type=positive,
        help=f"frames per camera per simulated second (default {CAMERA_FPS:g}; {FULL['camera_fps']:g} for the no-argument demo)",
    )
    d.add_argument("--control-step", type=positive, default=5.0, help="simulated s between control decisions (default 5)")
    d.add_argument("--min-green", type=positive, default=5.0, help="simulated s a green lasts at least (default 5)")
    d.add_argument(
        "--max-green", type=positive, default=60.0, help="simulated s after which a green gives way to anyone waiting (default 60)"
    )
    d.add_argument("--lag", type=non_negative, default=1.0, help="simulated s between a frame and the decision it feeds (default 1)")
    d.add_argument(
        "--controller", choices=("max_pressure", "greedy"), help="the camera-driven controller (default: the better one on exact queues)"
    )
    d.add_argument(
        "--realtime",
        action="store_true",
        help=f"pace simulated time to the wall clock (a live deployment): nothing waits for frames; cameras at "
        f"{REALTIME_FPS:g} frames/s unless --camera-fps says otherwise, SUMO stepping as often",
    )
    d.add_argument("--out", default="tierpipe-demo", help="report directory (default tierpipe-demo/)")
    d.add_argument(
        "--conditions", metavar="FILE", help="emulated conditions over time (YAML list: {at, link|node, bandwidth|speed|battery})"
    )
    d.add_argument(
        "--adapt",
        action="store_true",
        help="re-plan and switch live when the measured links drift (with a Wi-Fi drop on the first "
        "junction's cameras unless --conditions names a file)",
    )
    d.add_argument(
        "--exits",
        action="store_true",
        help="also run the cameras with an early exit on the camera (chosen with the codecs within --exit-error) and "
        "report exit rate, uplink bytes, live MAE and the traffic result against the run without (report.json: exits)",
    )
    d.add_argument(
        "--exit-error",
        type=positive,
        default=0.05,
        help="the exit's budget: mean difference from the full model, halting vehicles per lane (default 0.05)",
    )
    add_view_args(d, "the city, cameras, tiers and figures")
    d.set_defaults(func=main)


def main(args) -> int:
    from partition.extras import require

    require("demo", "tierpipe demo")
    from . import DEFAULT_SCENARIO
    from .demo_run import DemoConfig, run_demo
    from .loop import check_rates
    from .scenario import Scenario

    preset = QUICK if args.quick else FULL
    default = args.scenario is None and args.net is None
    # the no-argument demo (and --quick) runs the preset's window; a user's scenario its own window
    # (--quick: the first QUICK seconds of it); --begin/--end always win
    end = args.end if args.end is not None else (preset["end_s"] if default else None)
    scenario = Scenario.load(
        args.scenario or (DEFAULT_SCENARIO if default else None),
        net=args.net,
        routes=args.routes,
        tls=args.tls,
        begin_s=args.begin,
        end_s=end,
    )
    if args.quick and args.end is None and not default:
        scenario = replace(scenario, end_s=min(scenario.end_s, scenario.begin_s + QUICK["end_s"]))
    fps = args.camera_fps or (REALTIME_FPS if args.realtime else preset["camera_fps"] if default else CAMERA_FPS)
    check_rates(fps, args.control_step, args.lag)
    config = DemoConfig(
        seeds=tuple(args.seeds or preset["seeds"]),
        camera_fps=fps,
        control_step_s=args.control_step,
        lag_s=args.lag,
        controller=args.controller,
        min_green_s=args.min_green,
        max_green_s=args.max_green,
        realtime=args.realtime,
        conditions=args.conditions,
        adapt=args.adapt,
        view=args.view,
        view_host=args.view_host,
        view_port=args.view_port,
        exits=args.exits,
        exit_error=args.exit_error,
    )
    run_demo(Path(args.out), scenario, config)
    return 0
