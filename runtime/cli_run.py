"""``tierpipe run``: stream a partitioned model through Ray actors (the smart-city demo is ``examples.smart_city``)."""

from __future__ import annotations

from rich.console import Group
from rich.live import Live

from .argtypes import add_view_args, pack, positive, positive_int


def register(sub, partition_args) -> None:
    p = sub.add_parser("run", help="partition (or load a plan) and stream frames through Ray actors")
    partition_args(p)
    p.add_argument("--plan", help="a plan.json from `tierpipe partition --out` (skips partitioning)")
    p.add_argument("--seconds", type=positive, default=10.0, help="how long the sources stream")
    p.add_argument("--fps", type=positive, help="frames/s per source (default: the topology's)")
    p.add_argument("--address", help="an existing Ray cluster ('auto' for `tierpipe cluster local`); default: local Ray")
    p.add_argument("--emulate", choices=["on", "off"], help="override the topology's emulate switch")
    p.add_argument("--max-batch", type=positive_int, default=8, help="frames a stage runs at once (default 8)")
    p.add_argument(
        "--pack",
        type=pack,
        default="auto",
        help="processes for the nodes: auto (local: half as many as cores, nodes packed; cluster: one per node), node, tier, or a number",
    )
    p.add_argument("--report", default="tierpipe-run/report.json", help="where to write the JSON report")
    p.add_argument(
        "--conditions",
        metavar="FILE",
        help="conditions over time (YAML list: {at, link|node, bandwidth|speed|battery}); replaces the topology's own; emulation only",
    )
    p.add_argument(
        "--adapt",
        action="store_true",
        help="re-plan and switch live when measured links or speeds drift from the plan's (report.json "
        "gets plan_switches and a per-second timeline; a PNG beside it)",
    )
    add_view_args(p, "the tiers, the plan and the figures over time")
    p.set_defaults(func=cmd_run)


def _stream(args, model, plan, topo, seconds: float, fps: float | None, emulate: bool | None, max_batch: int, graph=None) -> dict:
    from .cli import console
    from .pipeline import Pipeline
    from .report import report_tables, summary_line

    console.print(f"starting {sum(t.nodes for t in topo.path)} nodes ({'local Ray' if not args.address else args.address})...")
    conditions = None
    if getattr(args, "conditions", None):
        from partition.conditions import load_conditions

        conditions = load_conditions(args.conditions, topo)
    adapt = bool(getattr(args, "adapt", False))
    if adapt and graph is not None and getattr(args, "profiles", None):  # re-plans with the measured tiers' and links' profiles
        from .adapt import Adapter
        from .cli import load_profiles

        adapt = Adapter(graph, codec="auto", profiles=load_profiles(args))
    view = None
    if getattr(args, "view", False):
        from .view.run import RunView

        view = RunView(plan, f"tierpipe run: {plan.model} on {topo.name}", args.view_host, args.view_port)
        view.start(console)
    try:
        with Pipeline(
            plan,
            model,
            topo,
            address=args.address,
            emulate=emulate,
            max_batch=max_batch,
            conditions=conditions,
            adapt=adapt,
            graph=graph,
            pack=getattr(args, "pack", "auto"),
        ) as pipe:
            if view is not None:
                view.attach(pipe)

            def on_update(r):
                live.update(Group(*report_tables(r)))
                if view is not None:
                    view.update(f"{r['frames_delivered']} frames delivered")

            with Live(console=console, refresh_per_second=4, transient=True) as live:
                report = pipe.stream(seconds, fps=fps, on_update=on_update)
            if view is not None:
                view.update(f"{report['frames_delivered']} frames delivered")  # the final figures
        for table in report_tables(report):
            console.print(table)
        console.print(summary_line(report))
        if graph is not None:
            _add_times(args, report, plan, graph, topo, console)
        _finish(args, report, adapt, console)
        if view is not None:
            view.finish([summary_line(report)])
            view.hold(console)
    finally:
        if view is not None:
            view.close()
    return report


def _add_times(args, report: dict, plan, graph, topo, console) -> None:
    """``stage_times`` and ``link_times`` into the report, and a table of them."""
    from rich.table import Table

    from partition import CostModel

    from .cli import load_profiles
    from .stagetimes import link_times, stage_times

    profiles = load_profiles(args)
    profiled = CostModel(graph, topo, profiles) if profiles else None
    report["stage_times"] = stage_times(report, plan, CostModel(graph, topo), profiled)
    report["link_times"] = link_times(report, profiled)
    table = Table(title="time per frame: predicted (analytic, profiled) and measured" + ("" if report["emulated"] else ", emulation off"))
    for col in ("stage / link", "predicted ms", "profiled ms", "measured ms", "error", "profiled error"):
        table.add_column(col, justify="left" if col == "stage / link" else "right")

    def ms(x):
        return "-" if x is None else f"{x * 1e3:.2f}"

    def pct(x):
        return "-" if x is None else f"{x:+.0%}"

    by_tier: dict[str, list[dict]] = {}
    for r in report["stage_times"]:
        by_tier.setdefault(r["tier"], []).append(r)
    for tier, rows in by_tier.items():
        if len(rows) > 4:  # a city's 1,000 cameras: one row, the median node (report.json has every node)
            rows = [_median_row(tier, rows)]
        for r in rows:
            table.add_row(
                r["label"] if "label" in r else f"{r['tier']} ({r['node']})",
                ms(r["predicted_s"]),
                ms(r["profiled_s"]),
                ms(r["measured_s"]),
                pct(r["error"]),
                pct(r["profiled_error"]),
            )
    for r in report["link_times"]:
        table.add_row(r["link"], ms(r["predicted_s"]), ms(r["profiled_s"]), ms(r["measured_s"]), pct(r["error"]), pct(r["profiled_error"]))
    console.print(table)


def _median_row(tier: str, rows: list[dict]) -> dict:
    import statistics

    def median(key):
        values = [r[key] for r in rows if r[key] is not None]
        return statistics.median(values) if values else None

    out = {"label": f"{tier} ({len(rows)} nodes, median)"}
    for key in ("predicted_s", "profiled_s", "measured_s", "error", "profiled_error"):
        out[key] = median(key)
    return out


def _finish(args, report: dict, adapt: bool, console) -> None:
    from .report import save_report

    for s in report["plan_switches"]:
        console.print(
            f"plan switch at {s['at_s']:.1f} s -> v{s['version']}"
            + (f" for {', '.join(s['nodes'])}" if s.get("nodes") else "")
            + f": {s['reason']} (predicted "
            f"{s['predicted_fps_before']:.1f} -> {s['predicted_fps_after']:.1f} fps)" + (f"; failed: {s['error']}" if s["error"] else "")
        )
    save_report(report, args.report)
    console.print(f"report written to {args.report}")
    if adapt:
        from pathlib import Path

        from partition.extras import MissingDependency

        from .timeline_plot import plot_timeline

        try:
            png = plot_timeline(report, Path(args.report).with_suffix(".png"))
            console.print(f"timeline plot written to {png}")
        except MissingDependency as exc:  # the report has the timeline; only the picture needs matplotlib
            console.print(f"no timeline plot: {exc}")


def cmd_run(args) -> int:
    from partition import Plan, Topology
    from partition.inputs import check_plan_frames, source_frames

    from .cli import _load_graph, console, make_plan

    topo = Topology.load(args.topology)
    graph = None
    if args.plan:
        plan = Plan.load(args.plan)
        check_plan_frames(plan, source_frames(topo, args.input_shape))
        model, _, graph = _load_graph(args, topo)  # for the report's predicted stage times
    else:
        model, _, graph = _load_graph(args, topo)
        topo, plan = make_plan(args, graph, topo)
        for table in plan.tables():
            console.print(table)
    if args.exits:  # the stages of exits need their heads
        from partition.exit_file import load_exits

        model, _ = load_exits(model, plan.example_inputs(), args.exits)
    emulate = None if args.emulate is None else args.emulate == "on"
    _stream(args, model, plan, topo, args.seconds, args.fps, emulate, args.max_batch, graph)
    return 0
