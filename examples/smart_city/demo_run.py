"""The demo's run: scenario -> topology -> plan -> SUMO baselines -> camera-driven runs -> report and plots."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from rich.console import Console
from rich.live import Live
from rich.progress import Progress
from rich.table import Table

from .loop import LoopStats, run_camera_loop
from .model import SAMPLE_FRAMES, load_model
from .plots import write_plots
from .report import build_report, summary_table
from .scenario import Scenario
from .sim import BASELINES, SimOptions, simulate
from .simproc import run_in_process

__all__ = ["DemoConfig", "run_demo", "wifi_drop", "SAMPLE_FRAMES"]


@dataclass(frozen=True)
class DemoConfig:
    """How the demo runs a scenario (the CLI's flags)."""

    seeds: tuple[int, ...] = (1, 2, 3)
    camera_fps: float = 1.0
    control_step_s: float = 5.0
    lag_s: float = 1.0
    min_green_s: float = 5.0
    max_green_s: float = 60.0
    controller: str | None = None  # None: the better of max-pressure and greedy on exact queues
    realtime: bool = False
    conditions: str | Path | None = None
    adapt: bool = False
    view: bool = False  # serve the live page (view.py) and keep it up at the end until Ctrl-C
    view_host: str = "127.0.0.1"
    view_port: int = 8765
    exits: bool = False  # a second camera-driven run with the camera exit (exits.py), reported against the first
    exit_error: float = 0.05  # its budget: mean absolute difference from the full model, vehicles per lane

    def options(self, controller: str = "max_pressure") -> SimOptions:
        # SUMO steps as often as the cameras take frames (at most a second apart): 10 frames/s are 10 steps a second
        step = min(1.0, 1.0 / self.camera_fps) if self.camera_fps > 1 else None
        return SimOptions(self.control_step_s, self.min_green_s, self.max_green_s, self.lag_s, controller, step)


def wifi_drop(topology: dict, path: Path) -> Path:
    """Conditions: the first gateway's cameras lose their Wi-Fi (50 kbit/s) 10 s in and get it back at 40 s."""
    cams = next(iter(topology["fan_in"].values()))
    link = topology["links"][0]
    rows = [{"at": "10 s", "node": c, "bandwidth": "50 kbit/s"} for c in cams]
    rows.append({"at": "40 s", "link": f"{link['from']}->{link['to']}", "bandwidth": link["bandwidth"]})
    path.write_text(
        "# the cameras of the first junction lose their street Wi-Fi (a bus parks in front of the access "
        "point) 10 s into the stream and get it back at 40 s\n" + yaml.safe_dump({"conditions": rows})
    )
    return path


def calibration_frames(sample: torch.Tensor) -> list[tuple]:
    """Four of the shipped frames: what lossy codecs are checked on (at the start and when re-planning)."""
    return [(sample[i : i + 1],) for i in range(0, len(sample), max(len(sample) // 4, 1))][:4]


def _plan(topo, console: Console):
    from partition import capture, partition

    model, _ = load_model()
    sample = torch.from_numpy(np.load(SAMPLE_FRAMES))
    with console.status(f"capturing and partitioning QueueNet onto {topo.name}..."):
        # analytic per-op costs: the same plan on every machine and every run
        graph = capture(model, (sample[:1],), timing="analytic")
        plan = partition(graph, topo, "throughput", codec="auto", model_name="queuenet", calibration=calibration_frames(sample))
    return model, plan, graph, sample


def _baselines(scenario: Scenario, config: DemoConfig, progress: Progress, view=None) -> dict[str, list[dict]]:
    jobs = [(seed, mode) for seed in config.seeds for mode in BASELINES]
    if view is not None:
        view.phase("baselines", f"SUMO without cameras: 0 of {len(jobs)} runs")
    task = progress.add_task(f"SUMO without cameras ({', '.join(BASELINES)})", total=len(jobs))
    out: dict[str, list[dict]] = {m: [] for m in BASELINES}
    for i in range(0, len(jobs), 2):  # libsumo: one simulation per process; two at a time
        pending = [(m, run_in_process(simulate, scenario, seed, m, config.options())) for seed, m in jobs[i : i + 2]]
        for m, p in pending:
            out[m].append(p.get())
            progress.advance(task)
            if view is not None:
                done = sum(len(v) for v in out.values())
                view.phase("baselines", f"SUMO without cameras: {done} of {len(jobs)} runs")
    return out


def _live_table(stats: LoopStats, sim_t: float, scenario: Scenario, plan: str) -> Table:
    lat = np.asarray(stats.latencies_ms[-2000:]) if stats.latencies_ms else np.zeros(1)
    table = Table(
        title=f"{scenario.name}, camera-driven control, seed {stats.seed}: "
        f"simulated {sim_t - scenario.begin_s:.0f} / {scenario.end_s - scenario.begin_s:.0f} s"
    )
    for col in ("cameras", "frames sent", "delivered", "fps (last s)", "p50 ms", "p99 ms", "live MAE / lane", "in order", "plan"):
        table.add_column(col, justify="right")
    table.add_row(
        str(stats.cameras),
        str(stats.frames_sent),
        str(stats.frames_delivered),
        str(stats.per_second[-1] if stats.per_second else 0),
        f"{np.percentile(lat, 50):.0f}",
        f"{np.percentile(lat, 99):.0f}",
        f"{stats.mae:.3f}",
        "yes" if stats.order_ok else "NO",
        plan,
    )
    return table


def run_demo(out: Path, scenario: Scenario, config: DemoConfig = DemoConfig(), console: Console | None = None) -> dict:
    """Run the whole demo on ``scenario``; writes ``out/report.json``, ``out/topology.yaml`` and the plots."""
    from partition import Topology
    from partition.conditions import load_conditions

    console = console or Console()
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    topo_dict = scenario.topology(fps=config.camera_fps)
    topo_path = out / "topology.yaml"
    topo_path.write_text(
        f"# generated by tierpipe demo from {scenario.config or scenario.net}\n" + yaml.safe_dump(topo_dict, sort_keys=False)
    )
    topo = Topology.load(topo_path)
    conditions = config.conditions or (wifi_drop(topo_dict, out / "wifi_drop.yaml") if config.adapt else None)
    timeline = load_conditions(conditions, topo) if conditions else None  # a bad file fails before SUMO runs
    console.print(
        f"scenario {scenario.name}: {len(scenario.junctions)} signalised junctions, {len(scenario.cameras)} "
        f"cameras (lanes per camera {scenario.lanes_per_camera}), simulated {scenario.begin_s:g}-{scenario.end_s:g} s, "
        f"seeds {list(config.seeds)}; topology written to {topo_path}"
    )
    view = _start_view(scenario, config, console)
    try:
        return _run(out, scenario, config, console, started, topo_dict, topo, conditions, timeline, view)
    finally:
        if view is not None:
            view.close()


def _start_view(scenario: Scenario, config: DemoConfig, console: Console):
    if not config.view:
        return None
    from runtime.view.page import announce

    from .view import DemoView

    view = DemoView(scenario, config.view_host, config.view_port)
    view.start()
    announce(view.server, console, "the city, the cameras and the pipeline")
    return view


def _run(out, scenario, config, console, started, topo_dict, topo, conditions, timeline, view) -> dict:
    from runtime.adapt import Adapter
    from runtime.raystart import quiet_ray

    if view is not None:
        view.phase("starting", "capturing and partitioning QueueNet")
    model, plan, graph, sample = _plan(topo, console)
    if view is not None:
        view.planned(plan)
    for table in plan.tables():
        console.print(table)
    with Progress(console=console, transient=True) as progress:
        traffic = _baselines(scenario, config, progress, view)
    delay = {m: float(np.mean([r["mean_delay_s"] for r in traffic[m]])) for m in BASELINES}
    controller = config.controller or min(("max_pressure", "greedy"), key=lambda c: delay[f"{c}_truth"])
    console.print(
        "SUMO baselines, mean delay per vehicle: "
        + ", ".join(f"{m} {d:.1f} s" for m, d in delay.items())
        + f"; the cameras drive {controller}"
    )
    quiet_ray()
    adapter = Adapter(graph, "throughput", codec="auto", calibration=calibration_frames(sample)) if config.adapt else False
    runs, pipe_report, startup_s = camera_runs(
        plan, model, topo, graph, scenario, config, controller, console, view, timeline, adapter, traffic
    )
    traffic["camera"] = [s.traffic for s in runs]
    report = build_report(scenario, config, controller, plan, traffic, runs, pipe_report, startup_s)
    if conditions or config.adapt:
        report["adaptation"] = _adaptation(pipe_report, conditions, config.adapt, out, console)
    if config.exits:
        from .exits import run_with_exits

        report["exits"] = run_with_exits(scenario, config, controller, topo, model, graph, plan, sample, report, console)
    report["demo_wall_s"] = round(time.perf_counter() - started, 1)
    report["plots"] = write_plots(out, report, runs, scenario)
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    console.print(summary_table(report))
    for line in report["verdict"]:
        console.print(line)
    console.print(f"report, topology and plots written to {out}/")
    if view is not None:
        view.finish(report, runs)
        view.hold(console)
    return report


def camera_runs(
    plan, model, topo, graph, scenario, config, controller, console, view=None, timeline=None, adapter=False, traffic=None, shadow=None
):
    """Start a pipeline for ``plan``, run the camera-driven loop once per seed, close it: ``(runs, report, startup s)``."""
    from runtime import Pipeline

    if view is not None:
        view.phase("starting", f"starting {sum(t.nodes for t in topo.path)} stage actors")
    with console.status(f"starting {sum(t.nodes for t in topo.path)} stage actors (emulated tiers and links)..."):
        t0 = time.perf_counter()
        pipe = Pipeline(plan, model, topo, emulate=True, conditions=timeline, adapt=adapter, graph=graph)
        pipe.start()
        startup_s = time.perf_counter() - t0
    console.print(f"pipeline up in {startup_s:.1f} s")
    runs: list[LoopStats] = []
    if view is not None:
        view.attach(pipe)
    try:
        for i, seed in enumerate(config.seeds):
            if view is not None:
                view.baselines(traffic, i)
            with Live(console=console, refresh_per_second=4, transient=True) as live:
                stats = run_camera_loop(
                    pipe,
                    scenario,
                    seed,
                    config.options(controller),
                    config.camera_fps,
                    realtime=config.realtime,
                    on_tick=lambda s, t: live.update(_live_table(s, t, scenario, pipe.plan_label)),
                    on_view=None if view is None else lambda s, sim, latest, seed=seed: view.tick(s, sim, latest, seed),
                    shadow=shadow,
                )
            console.print(_live_table(stats, scenario.end_s, scenario, pipe.plan_label))
            runs.append(stats)
        pipe_report = pipe.report()
    finally:
        pipe.close()
    return runs, pipe_report, startup_s


def _adaptation(pipe_report: dict, conditions, adapt: bool, out: Path, console: Console) -> dict:
    """The conditions, the switches and the per-second timeline, printed and plotted (``adaptation.png``)."""
    from runtime.timeline_plot import plot_timeline

    switches = pipe_report["plan_switches"]
    for s in switches:
        console.print(
            f"plan switch at {s['at_s']:.1f} s -> v{s['version']}"
            + (f" for {', '.join(s['nodes'])}" if s.get("nodes") else "")
            + f": {s['reason']} (predicted "
            f"{s['predicted_fps_before']:.0f} -> {s['predicted_fps_after']:.0f} fps, loaded in "
            f"{s['switch_s'] or float('nan'):.1f} s)" + (f"; failed: {s['error']}" if s["error"] else "")
        )
    if adapt and not switches:
        console.print("no plan switch: the measured links and speeds stayed close to the plan's")
    title = f"QueueNet, {'adaptive' if adapt else 'fixed plan'} ({Path(conditions).name if conditions else ''})"
    png = plot_timeline(pipe_report, out / "adaptation.png", title=title)
    return {
        "adapt": adapt,
        "conditions": str(conditions) if conditions else None,
        "plan_version": pipe_report["plan_version"],
        "plan_switches": switches,
        "timeline": pipe_report["timeline"],
        "plot": png.name,
    }
