"""``tierpipe profile MODEL --address ...``: every op timed on a node of every tier, where it runs.

One Ray task per tier, placed on that tier's first node by its labels (as the stage actors are),
traces the model there, joins the node's CPU cgroup on a lab (``nodecpu.py``), runs the graph with a clock stamp
after every op (``partition.timing``) for at least ``seconds``, and returns each op's mean time.
The tiers are profiled one after another, so that one tier's profile does not slow another's on a
machine they share (a lab); on separate machines that costs only time. The result is the table
``CostModel(profiles=...)`` takes: ``{tier: {op: seconds}}``, saved with what it was measured on.

The ops run as a stage runs them: one frame at a time, started at most as often as frames reach the
tier's busiest node (:func:`frame_interval`: a camera at 10 frames/s, 0.1 s), not in a tight loop,
where an op of a few microseconds runs 2-3x faster than it will in the pipeline. They are timed in
CPU seconds, divided by the cores the node's cgroup quota gives (a lab; 1 elsewhere): a quota is a
budget per period, so a burst shorter than it runs at full speed and wall times would say more about
the period than about the tier. Each tier also times the runtime's own CPU per stage call (the
``BatchRunner`` and stage wrapper; and the thread hop of a stage run off the event loop), in the
same rhythm: ``profiles["_calls"]``, which ``CostModel.stage_s`` adds to a stage's ops.

Links are measured too (``profiles["_links"]``), through a stage's own per-frame path: the driver hands an
actor on a node of each tier a packed frame as often as frames reach that tier; the actor decodes it (an
inbox's work), packs it again (an outbox's) and pushes it to an actor on the next tier's node, which decodes
it; both in their nodes' cgroups. The time from the packing to the receiver holding the frame is what a
run's report measures of a link. A straight-line fit of it over a few frame sizes gives the fixed time of a
transfer (``call_s``) and, less the wire's time per byte at the topology's bandwidth, the ends' time per
byte (``cpu_s_per_byte``). On a lab the device's quota, not its link, often bounds what it can send: the
decoding before the send spends part of the quota's budget, as it does in a run.

The quota's budget is a step, not a speed (``partition/quota.py``): the profile records each tier's quota
(``budget_s``, ``period_s`` in ``profiles["_calls"]``) and ``CostModel.stage_s`` prices a stage's expected wall
time under it. A profile is made for a frame rate: ``fps`` (``tierpipe profile --fps``) gives the rate a run
will stream at; ops run now and then are slower than ops run often, and a quota's budget is refilled between
frames that come seldom.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

from partition.cost import CALLS_KEY, LINKS_KEY
from partition.topology import Topology

from .errors import PipelineError

__all__ = ["profile_tiers", "profile_links", "save_profiles", "measure_and_save", "frame_interval"]

# bytes per frame the links are measured with: all above Ray's 100 KiB inline limit, so one line fits one path
# (the object store's); smaller frames ride in the call and cost less, so their priced fixed time is an upper bound
LINK_SIZES = (128 << 10, 256 << 10, 512 << 10)
MIN_FRAMES = 16  # a tier's ops are timed over at least this many frames (and at least --seconds): one frame's noise is not a profile


def frame_interval(topology: Topology, tier: int, fps: float | None = None) -> float:
    """Seconds between frames at the tier's busiest node: its streams at the sources' mean rate, or at ``fps``
    per source (the rate a run will stream at: ``tierpipe run --fps``).

    >>> frame_interval(Topology.load("three_tier"), 0), round(frame_interval(Topology.load("smart_city"), 2), 4)
    (0.1, 0.0042)
    >>> frame_interval(Topology.load("three_tier"), 0, fps=2.0)
    0.5
    """
    rates = [fps or s.fps for s in topology.sources for _ in range(s.count or 1)] or [fps or 10.0]
    return 1.0 / (topology.max_streams(tier) * sum(rates) / len(rates))


def _call_overhead_s(every_s: float, runs: int = 16) -> tuple[float, float]:
    """CPU seconds the runtime spends calling a stage beyond its ops: ``(on the event loop, the extra of a thread
    hop)``, as ``actors.py`` runs a stage (``BatchRunner`` under the stage lock; off the loop through
    ``asyncio.to_thread``), each call started every ``every_s`` as frames come. Medians of CPU time: the
    process's other threads (Ray's) add noise to a hop's CPU, not a bias."""
    import asyncio
    import statistics
    import time

    import torch
    import torch.fx as fx

    from partition.split import Stage, StageSpec

    from .batching import BatchRunner
    from .versions import run_locked

    class _Module(torch.nn.Module):  # the smallest stage: one op
        def forward(self, x):
            return (x + 1,)

    stage = Stage(StageSpec(0, "probe", ("add",), ("x",), ("add",)), fx.symbolic_trace(_Module()))
    runner, values = BatchRunner(stage, {}, max_batch=1), [{"x": torch.zeros(16)}]
    hop, inline = [], []

    async def measure() -> None:
        for _ in range(runs):
            await asyncio.sleep(every_s)
            began = time.thread_time()
            run_locked(runner, values)
            inline.append(time.thread_time() - began)
            await asyncio.sleep(every_s)
            began = time.process_time()
            await asyncio.to_thread(run_locked, runner, values)
            hop.append(time.process_time() - began)

    asyncio.run(measure())
    on_loop = statistics.median(inline[1:])
    return on_loop, max(statistics.median(hop[1:]) - on_loop, 0.0)


def _profile_here(model, inputs: tuple, seconds: float, where: str, every_s: float = 0.0) -> dict:
    """Runs on the tier's node: the ops' mean times there, one frame every ``every_s``, the stage call's
    overhead, and what the node is. Times are CPU seconds over the node's cores (its cgroup's quota;
    1 without): what a CPU of that speed takes, not where a quota's period happened to fall. The model
    is traced there as a stage actor traces it (the same op names as the captured graph)."""
    import os

    import torch

    from partition.timing import time_nodes
    from partition.tracer import trace

    from .nodecpu import cpu_quota, join_node_cgroup, node_cores

    torch.set_num_threads(1)  # as a stage actor runs
    gm, _ = trace(model, inputs)
    cgroup = join_node_cgroup(where)
    cores = min(node_cores() or 1.0, 1.0)  # a stage runs one thread
    with torch.no_grad():
        cpu = time_nodes(gm, inputs, repeats=MIN_FRAMES, warmup=1, stat="mean", min_seconds=seconds, every_s=every_s, clock="cpu")
    stage_cpu, hop_cpu = _call_overhead_s(min(max(every_s, 0.01), 0.25))
    call = {"stage_s": stage_cpu / cores, "hop_s": hop_cpu / cores}
    quota = cpu_quota(cgroup) if cgroup else None
    if quota and quota[0] is not None and quota[0] < quota[1]:  # a budget per period: CostModel prices a stage's wall under it
        call.update(budget_s=quota[0] / 1e6, period_s=quota[1] / 1e6)
    return {
        "ops": {op: v / cores for op, v in cpu.items()},
        "call": call,
        "cores": cores,
        "host": platform.node(),
        "pid": os.getpid(),
        "cgroup": cgroup,
        "torch": torch.__version__,
    }


class _LinkEnd:
    """One end of a profiled link, in its node's cgroup, doing what a stage does per frame. ``relay`` is the sender:
    it decodes the frame it is given (as an inbox decodes what reaches it), packs it again (as an outbox does) and
    pushes it to ``peer``; it returns the seconds from its packing to the peer holding the decoded frame, which
    is what a run's report measures of a link. ``take`` is the receiver: decodes (``wire.unpack``), says when."""

    def __init__(self, where: str) -> None:
        from .nodecpu import join_node_cgroup

        self.where = where
        self.cgroup = join_node_cgroup(where)

    def take(self, frames: list) -> float:
        import time

        from .wire import unpack

        for f in frames:
            unpack(f, {"x": None}, self.where, 1 << 31)
        return time.time()

    def relay(self, frame, peer) -> float:
        import time

        import ray

        from .wire import pack, unpack

        got = unpack(frame, {"x": None}, self.where, 1 << 31)
        start = time.time()
        return ray.get(peer.take.remote([pack(got, "raw")])) - start


def _link_times(sender, receiver, sizes: tuple, seconds: float, every_s: float) -> dict:
    """Mean seconds of a frame's transfer per size: the driver hands ``sender`` a frame every ``every_s`` (as frames
    reach the tier), which relays it to ``receiver``; at least 3 per size and ``seconds``."""
    import statistics
    import time

    import ray
    import torch

    from .wire import Frame, pack

    out = {}
    for size in sizes:
        frame = pack(Frame(0, 0, [time.time()], {"x": torch.rand(size // 4)}), "raw")
        ray.get(sender.relay.remote(frame, receiver), timeout=600)  # warm: the connection, the imports
        times: list[float] = []
        began = time.perf_counter()
        while len(times) < 3 or time.perf_counter() - began < seconds:
            time.sleep(every_s)  # the budget of a quota refilled, as between frames
            times.append(ray.get(sender.relay.remote(frame, receiver), timeout=600))
        out[size] = statistics.fmean(times)
    return out


def profile_links(
    topology: Topology, address: str | None, seconds: float = 1.0, sizes: tuple = LINK_SIZES, fps: float | None = None
) -> dict:
    """``{"a->b": {"call_s", "cpu_s_per_byte", "s_per_byte", "transfer_s": {bytes: s}}}`` for every link on the path,
    a frame sent as often as frames reach the sending tier's busiest node (:func:`frame_interval`, at ``fps``)."""
    import numpy as np
    import ray

    from partition.cost import link_name

    from .placement import actor_options, labelled_nodes

    labelled = labelled_nodes()
    end = ray.remote(max_restarts=0)(_LinkEnd)
    out = {}
    for j in range(len(topology.path) - 1):
        ends = []
        for tier in topology.path[j : j + 2]:
            node = tier.node_names()[0]
            ends.append(end.options(**actor_options(topology, address, node, tier.name, labelled)).remote(f"link profile on {node}"))
        try:
            every = min(frame_interval(topology, j, fps), 0.5)
            rtt = _link_times(ends[0], ends[1], tuple(sizes), seconds, every)
        except (ray.exceptions.GetTimeoutError, ray.exceptions.RayError) as exc:
            name = link_name(topology.path, j)
            raise PipelineError(f"profiling link {name} failed ({type(exc).__name__}: {exc}); are both nodes alive?") from None
        finally:
            for a in ends:
                ray.kill(a)
        x = np.array(sorted(rtt), dtype=float)
        slope, intercept = np.polyfit(x, np.array([rtt[b] for b in sorted(rtt)]), 1)
        wire = 8.0 / (topology.links[j].bandwidth_mbps * 1e6)
        out[link_name(topology.path, j)] = {
            "call_s": max(float(intercept), 0.0),
            "s_per_byte": max(float(slope), 0.0),
            "cpu_s_per_byte": max(float(slope) - wire, 0.0),
            "transfer_s": {str(b): rtt[b] for b in sorted(rtt)},
        }
    return out


def profile_tiers(
    model,
    inputs: tuple,
    topology: Topology,
    address: str | None,
    seconds: float = 3.0,
    links: bool = True,
    fps: float | None = None,
    calibrate: bool = False,
) -> dict:
    """``{"profiles": {tier: {op: s}, "_links": ...}, "measured_on": {tier: {node, host, cgroup}}}`` from the cluster
    at ``address`` (``links=False``: the ops only), frames coming at ``fps`` per source (None: the topology's rates);
    ``calibrate``: then the whole model run as one stage on each tier (``runtime/calibrate.py``), which scales the
    tiers' ops and corrects the links' fixed times; what it measured is ``result["calibration"]``.

    Raises:
        PipelineError: a tier has no node in the cluster (names the labels to start it with).
    """
    import ray

    from .placement import actor_options, labelled_nodes

    labelled = labelled_nodes()
    task = ray.remote(max_calls=1)(_profile_here)  # the worker exits after it: none stays under the quota
    profiles, where, calls = {}, {}, {}
    model_ref = ray.put(model)
    inputs_ref = ray.put(tuple(inputs))
    for t, tier in enumerate(topology.path):
        node = tier.node_names()[0]
        opts = actor_options(topology, address, node, tier.name, labelled)
        opts["num_cpus"] = 0
        try:
            every = min(frame_interval(topology, t, fps), 0.5)
            label = f"profile of {tier.name} ({node})"
            out = ray.get(task.options(**opts).remote(model_ref, inputs_ref, seconds, label, every), timeout=600)
        except ray.exceptions.GetTimeoutError:
            raise PipelineError(
                f"profiling on {node} (tier {tier.name}) took over 10 minutes: is that node alive and its quota sane?"
            ) from None
        except ray.exceptions.RayTaskError as exc:
            raise PipelineError(f"profiling on {node} (tier {tier.name}) failed: {exc.cause if hasattr(exc, 'cause') else exc}") from None
        profiles[tier.name], calls[tier.name] = out["ops"], out["call"]
        where[tier.name] = {
            "node": node,
            "host": out["host"],
            "cgroup": out["cgroup"],
            "torch": out["torch"],
            "frame_every_s": every,
            "cores": out["cores"],
        }
    profiles[CALLS_KEY] = calls
    if links and len(topology.path) > 1:
        profiles[LINKS_KEY] = profile_links(topology, address, max(seconds, 1.0), fps=fps)
    result = {"profiles": profiles, "measured_on": where}
    if calibrate:
        from partition.tracer import capture

        from .calibrate import calibrate as run_whole

        graph = capture(model, inputs, timing="analytic")
        result["calibration"] = run_whole(model, inputs, graph, topology, address, profiles, fps, MIN_FRAMES)
    return result


def save_profiles(path: str | Path, result: dict, model: str, topology: Topology, seconds: float) -> None:
    """The profiles, as ``CostModel.load_profiles`` reads them, with ``_about`` saying where they come from."""
    about = {"model": model, "topology": topology.name, "seconds_per_tier": seconds, "measured_on": result["measured_on"]}
    if topology.lab is not None:
        about["lab_cpu_scale"] = topology.lab.cpu_scale
    if result.get("calibration"):
        about["calibration"] = result["calibration"]
    Path(path).write_text(json.dumps({"_about": about, **result["profiles"]}, indent=1))


def measure_and_save(args, model, inputs, graph, topology: Topology, predicted, console):
    """``tierpipe profile --address``: measure, print measured against predicted per tier, save to ``--out``;
    returns the cost model with the measured profiles (the CLI's per-op table shows it)."""
    from partition.cost import CostModel

    from .connect import connect_driver

    connect_driver(args.address, topology, log_to_driver=False)
    with console.status(f"profiling {args.model} on {len(topology.path)} tiers, {args.seconds:g} s each..."):
        result = profile_tiers(
            model, inputs, topology, args.address, args.seconds, fps=getattr(args, "fps", None), calibrate=getattr(args, "calibrate", True)
        )
    measured = CostModel(graph, topology, result["profiles"])
    for t, tier in enumerate(topology.path):
        on = result["measured_on"][tier.name]
        m, p = float(measured.table[:, t].sum()), float(predicted.table[:, t].sum())
        console.print(
            f"{tier.name} on {on['node']} ({on['cgroup'] or 'no cgroup'}): whole model {m * 1e3:.1f} ms measured (ops, calibrated), "
            f"{p * 1e3:.1f} ms predicted"
            + (f" ({(p - m) / m:+.0%})" if m else "")
            + f"; a stage call adds {result['profiles'][CALLS_KEY][tier.name]['stage_s'] * 1e3:.2f} ms"
            + f" (+{result['profiles'][CALLS_KEY][tier.name]['hop_s'] * 1e3:.2f} off the event loop); {on['cores']:.3g} cores"
        )
    for name, c in result.get("calibration", {}).get("tiers", {}).items():
        if c["scale"] is None:
            console.print(f"[yellow]{name}: not calibrated[/yellow] (the whole model took {c['measured_s'] * 1e3:.1f} ms a frame)")
            continue
        console.print(
            f"{name}: the whole model as one stage in a pipeline took {c['measured_s'] * 1e3:.1f} ms a frame, "
            f"profiled {c['profiled_s'] * 1e3:.1f} ms (ops, call, quota)"
            + (
                f"; a one-op stage {c['small_measured_s'] * 1e3:.2f} ms, profiled {c['small_profiled_s'] * 1e3:.2f} ms"
                if c.get("small_measured_s") is not None
                else ""
            )
            + f": calibrated x{c['scale']:.2f} {c.get('offset_s') or 0.0:+.2e} s"
        )
    for name, c in result.get("calibration", {}).get("links", {}).items():
        console.print(f"link {name}: {c['measured_s'] * 1e3:.1f} ms a frame in that pipeline, {c['profiled_s'] * 1e3:.1f} ms profiled")
    for name, link in result["profiles"].get(LINKS_KEY, {}).items():
        rate = f"{8e-6 / link['s_per_byte']:.3g} Mbit/s" if link["s_per_byte"] else "too fast to tell"
        console.print(
            f"link {name}: {link['call_s'] * 1e3:.1f} ms per transfer, then {rate} measured "
            f"(the ends' work per byte beyond the wire: {link['cpu_s_per_byte'] * 1e9:.1f} ns)"
        )
    if args.out:
        save_profiles(args.out, result, args.model, topology, args.seconds)
        console.print(f"profiles written to {args.out}: `tierpipe partition/run ... --profiles {args.out}`")
    return measured
