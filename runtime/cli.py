"""The ``tierpipe`` command: profile, topology check, partition, run, demo, cluster, lab."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from rich.console import Console
from rich.table import Table

from partition.errors import TierpipeError

from .argtypes import Parser, input_shape, non_negative_int, positive

# a terminal sets its own width; piped or logged output gets room for the tables instead of 80 columns
console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 140)


def _load_graph(args, topo=None):
    """The model, the inputs the sources stream (the topology's ``sources[].shape/dtype`` where declared),
    and the captured graph."""
    from partition import capture
    from partition.errors import CaptureError
    from partition.inputs import frame_inputs, source_frames
    from partition.zoo import get_model

    model, example = get_model(args.model)
    frames = source_frames(topo, args.input_shape)
    inputs = frame_inputs(example, frames.shape, frames.dtype, frames.where)
    with console.status(f"capturing {args.model}..."):
        try:
            graph = capture(model, inputs, timing=args.timing)
        except CaptureError as exc:
            if frames.shape is None:
                raise
            raise CaptureError(
                f"{args.model} cannot take the {list(inputs[0].shape)} {inputs[0].dtype} frames of {frames.where}: {exc}"
            ) from None
    return model, inputs, graph


def cmd_profile(args) -> int:
    from partition import CostModel, Topology

    topo = Topology.load(args.topology) if args.topology else None
    if (args.address or args.out) and topo is None:
        raise TierpipeError("--address and --out profile the tiers of a topology: give --topology too")
    model, inputs, graph = _load_graph(args, topo)
    cm = CostModel(graph, topo) if topo else None
    if args.address:
        from .profiling import measure_and_save

        cm = measure_and_save(args, model, inputs, graph, topo, cm, console)
    elif args.out:
        cm.save_profiles(args.out)
        console.print(f"predicted per-op times (not measured: no --address) written to {args.out}")
    table = Table(
        title=f"{args.model}: {len(graph.nodes)} ops, {len(graph.inputs)} input(s), {len(graph.outputs)} "
        f"output(s), {graph.total_flops / 1e9:.2f} GFLOP, {graph.total_param_bytes / 2**20:.1f} MiB params"
    )
    cols = ["op" if not args.depth else "module", "target", "GFLOP", "params KB", "out KB", "host ms"]
    cols += [f"{t.name} ms" for t in (topo.path if topo else [])]
    for c in cols:
        table.add_column(c, justify="left" if c in ("op", "module", "target") else "right")
    rows: dict[str, list] = {}
    for i, node in enumerate(graph.nodes):
        key = node.name if not args.depth else (".".join(node.module.split(".")[: args.depth]) or "(top)")
        row = rows.setdefault(key, [node.target if not args.depth else "", 0.0, 0.0, 0.0, 0.0, [0.0] * (cm.table.shape[1] if cm else 0)])
        row[1] += node.flops / 1e9
        row[2] += node.param_bytes / 1e3
        row[3] = node.bytes_out / 1e3  # the last op's output is what leaves the group
        row[4] += node.host_time_s * 1e3
        if cm:
            row[5] = [a + b * 1e3 for a, b in zip(row[5], cm.table[i])]
    for key, (op, gf, pk, ok, ms, tiers) in rows.items():
        table.add_row(key, str(op), f"{gf:.3f}", f"{pk:.1f}", f"{ok:.1f}", f"{ms:.3f}", *[f"{t:.2f}" for t in tiers])
    total = [
        "total",
        "",
        f"{graph.total_flops / 1e9:.3f}",
        f"{graph.total_param_bytes / 1e3:.1f}",
        "",
        f"{graph.host_time_s * 1e3:.2f}",
    ] + ([f"{x * 1e3:.1f}" for x in cm.table.sum(axis=0)] if cm else [])
    table.add_row(*total, style="bold")
    console.print(table)
    console.print(f"captured via {graph.method} in {graph.capture_s:.2f} s")
    return 0


def cmd_topology(args) -> int:
    from partition import Topology

    topo = Topology.load(args.file)
    console.print(f"[green]ok[/green] {topo.summary()}")
    return 0


def _partition_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="zoo name (resnet18, resnet50, mobilenet_v2, vit, unet) or package.module:function")
    p.add_argument("--topology", default="local", help="shipped name or YAML path (default: local)")
    p.add_argument(
        "--input-shape", type=input_shape, help="e.g. 1,3,224,224 (default: the topology's sources[].shape, else the model's example input)"
    )
    p.add_argument(
        "--objective",
        default="latency",
        choices=["latency", "throughput", "bytes", "energy"],
        help="what the plan minimises per frame (throughput: maximises frames/s)",
    )
    p.add_argument("--codec", default="raw", help="auto, raw, fp16, int8, int8-channel, optionally +lz4/+zstd")
    p.add_argument("--keep-input-on", help="tier the raw input must never leave (privacy)")
    p.add_argument("--pin", action="append", default=[], metavar="MODULE=TIER", help="force a module path to a tier")
    p.add_argument("--slo-ms", type=positive, help="latency SLO in ms")
    p.add_argument("--no-memory", action="store_true", help="ignore tier memory budgets")
    p.add_argument(
        "--solver",
        default="auto",
        choices=["auto", "exact", "fast"],
        help="auto: the exact MILP within --time-budget-s, else its best plan and proven gap (default)",
    )
    p.add_argument("--time-budget-s", type=positive, default=10.0, help="the exact solver's time limit under --solver auto")
    p.add_argument(
        "--profiles", help="per-op times measured on the tiers (`tierpipe profile --address ... --out`) instead of predicted ones"
    )
    p.add_argument("--exits", metavar="FILE", help="early-exit heads from `tierpipe exits attach`: chosen with the cut")
    p.add_argument("--exit-agreement", type=positive, help="with --exits (max_softmax): least share of answers equal to the full model's")
    p.add_argument("--exit-error", type=positive, help="with --exits (predicted_error): largest mean error against the full model")
    _timing_arg(p)


def _timing_arg(p: argparse.ArgumentParser, default: str = "analytic") -> None:
    p.add_argument(
        "--timing",
        choices=["analytic", "measured"],
        default=default,
        help="op times from FLOPs and bytes (the same plan on every run) or timed on this host "
        "(closer to this machine, but noisy: plans may change from run to run)",
    )


def load_profiles(args):
    """The ``--profiles`` table, or None."""
    if not getattr(args, "profiles", None):
        return None
    from partition import CostModel

    return CostModel.load_profiles(args.profiles)


def make_plan(args, graph, topo):
    from partition import partition

    pins = {}
    for item in args.pin:
        if "=" not in item:
            raise TierpipeError(f"--pin {item!r}: write it as MODULE=TIER, e.g. --pin layer1=gateway")
        path, tier = item.split("=", 1)
        pins[path] = tier
    with console.status("partitioning..."):
        plan = partition(
            graph,
            topo,
            args.objective,
            codec=args.codec,
            keep_input_on=args.keep_input_on,
            pins=pins,
            latency_slo_ms=args.slo_ms,
            memory=not args.no_memory,
            model_name=args.model,
            solver=args.solver,
            time_budget_s=args.time_budget_s,
            profiles=load_profiles(args),
            exits=_exit_candidates(args, graph),
        )
    return topo, plan


def _exit_candidates(args, graph):
    """The exits of ``--exits FILE`` with their budget, or None."""
    if not getattr(args, "exits", None):
        if getattr(args, "exit_agreement", None) or getattr(args, "exit_error", None):
            raise TierpipeError("--exit-agreement / --exit-error need --exits FILE (from `tierpipe exits attach`)")
        return None
    from partition.exit_calib import ExitBudget
    from partition.exit_choice import exit_candidates
    from partition.exit_file import load_exits
    from partition.zoo import get_model

    model, _ = get_model(args.model)
    em, cal = load_exits(model, graph.example_inputs, args.exits)
    if args.exit_agreement is None and args.exit_error is None:
        raise TierpipeError(
            f"--exits {args.exits}: give its accuracy budget, --exit-agreement 0.98 (classification) or --exit-error (regression)"
        )
    budget = ExitBudget(min_agreement=args.exit_agreement, max_error=args.exit_error)
    return exit_candidates(em, cal, budget)


def cmd_partition(args) -> int:
    from partition import Topology

    topo = Topology.load(args.topology)
    _, _, graph = _load_graph(args, topo)
    _, plan = make_plan(args, graph, topo)
    for t in plan.tables():
        console.print(t)
    for line in plan.summary_lines():  # demand vs capacity, energy, the next-best plan, baselines' breaks
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if plan.accuracy:
        a = plan.accuracy
        console.print(
            f"lossy codecs on calibration inputs: max abs error {a.max_abs_error:.3g}, "
            f"max rel error {a.max_rel_error:.3g}, top-1 agreement {a.top1_agreement:.3f}"
        )
    if plan.exits:
        e = plan.exits
        live = ", ".join(f"{x.name} on {plan.tiers[x.tier]} at {x.threshold:.3g}" for x in e.live) or "none (none pays within the budget)"
        rates = ", ".join(f"{t} {r:.0%}" for t, r in zip(plan.tiers, e.rate_by_tier))
        console.print(f"early exits: {live}; frames answered per tier {rates}; calibrated {e.kind} {e.quality:.4g} (budget {e.bound:g})")
    console.print(f"method: {plan.method}; {plan.optimality()}; partitioned in {plan.partition_s * 1e3:.0f} ms")
    for note in plan.notes:
        console.print(f"note: {note}")
    if args.out:
        plan.save(args.out)
        console.print(f"plan written to {args.out}")
    return 0


def versions_line() -> str:
    """``tierpipe 0.1.0 (torch 2.13.0, ray 2.60.0, Python 3.11.7)``, read from the installed packages'
    metadata: nothing is imported."""
    from partition.extras import package_versions

    v = package_versions()
    return f"tierpipe {v['tierpipe']} (torch {v['torch']}, ray {v['ray']}, Python {sys.version.split()[0]})"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="tierpipe", description="Split inference across the tiers of an edge network.")
    parser.add_argument("--version", action="version", version=versions_line())
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (Ray's own messages too)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("profile", help="per-op FLOPs, params, output bytes, host and per-tier time (measured on the tiers with --address)")
    p.add_argument("model")
    p.add_argument("--input-shape", type=input_shape, help="e.g. 1,3,224,224 (default: the model's example input)")
    p.add_argument("--topology", help="add predicted time per tier")
    p.add_argument("--depth", type=non_negative_int, default=0, help="group by module path of this depth (0: per node)")
    p.add_argument("--address", help="measure every op on a node of each tier of the cluster there (auto, or HEAD:PORT)")
    p.add_argument("--seconds", type=positive, default=3.0, help="with --address: how long each tier runs the model")
    p.add_argument(
        "--fps",
        type=positive,
        help="with --address: frames/s per source the tiers are timed at, as `run --fps` will stream (default: the topology's); "
        "an op run now and then is slower than one run often",
    )
    p.add_argument(
        "--no-calibrate",
        dest="calibrate",
        action="store_false",
        help="with --address: skip running the whole model and a one-op stage on each tier in a real pipeline (the line "
        "through them scales each tier's ops and gives its stages' fixed time; the links' fixed times are corrected to what a "
        "run measures)",
    )
    p.add_argument("--out", help="write the per-op times per tier (profiles.json, for partition/run --profiles)")
    _timing_arg(p, default="measured")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("topology", help="topology files")
    tsub = p.add_subparsers(dest="action", required=True)
    c = tsub.add_parser("check", help="validate and summarise a topology")
    c.add_argument("file")
    c.set_defaults(func=cmd_topology)

    p = sub.add_parser("partition", help="cut a model over a topology and print the plan")
    _partition_args(p)
    p.add_argument("--out", help="save the plan as JSON")
    p.set_defaults(func=cmd_partition)

    from . import cli_cluster, cli_exits

    cli_cluster.register(sub)
    cli_exits.register(sub)
    from .lab import cli as lab_cli

    lab_cli.register(sub)
    try:
        from . import cli_run

        cli_run.register(sub, _partition_args)
    except ImportError as exc:  # the runtime needs ray; partitioning does not
        logging.getLogger(__name__).debug("run commands unavailable: %s", exc)
    from examples.smart_city import demo

    demo.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        from runtime.raystart import quiet_ray

        quiet_ray()
    try:
        return int(args.func(args) or 0)
    except (TierpipeError, FileNotFoundError, json.JSONDecodeError) as exc:
        if args.debug:
            raise
        from rich.markup import escape

        # escaped: a message saying pip install 'tierpipe[demo]' must not lose "[demo]" as a markup tag
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
