"""``tierpipe profile MODEL --address ...``: every op timed on a node of every tier, where it runs.

One Ray task per tier, placed on that tier's first node by its labels (as the stage actors are),
traces the model there, joins the node's CPU cgroup on a lab (``nodecpu.py``), runs the graph with a clock stamp
after every op (``partition.timing``) for at least ``seconds``, and returns each op's mean time.
The tiers are profiled one after another, so that one tier's profile does not slow another's on a
machine they share (a lab); on separate machines that costs only time. The result is the table
``CostModel(profiles=...)`` takes: ``{tier: {op: seconds}}``, saved with what it was measured on.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

from partition.topology import Topology

from .errors import PipelineError

__all__ = ["profile_tiers", "save_profiles", "measure_and_save"]


def _profile_here(model, inputs: tuple, seconds: float, where: str) -> dict:
    """Runs on the tier's node: the ops' mean times there, and what the node is. The model is traced
    there as a stage actor traces it (the same op names as the captured graph)."""
    import os

    import torch

    from partition.timing import time_nodes
    from partition.tracer import trace

    from .nodecpu import join_node_cgroup

    torch.set_num_threads(1)  # as a stage actor runs
    gm, _ = trace(model, inputs)
    cgroup = join_node_cgroup(where)
    with torch.no_grad():
        times = time_nodes(gm, inputs, repeats=3, warmup=1, stat="mean", min_seconds=seconds)
    return {"ops": times, "host": platform.node(), "pid": os.getpid(), "cgroup": cgroup, "torch": torch.__version__}


def profile_tiers(model, inputs: tuple, topology: Topology, address: str | None, seconds: float = 3.0) -> dict:
    """``{"profiles": {tier: {op: s}}, "measured_on": {tier: {node, host, cgroup}}}`` from the cluster at ``address``.

    Raises:
        PipelineError: a tier has no node in the cluster (names the labels to start it with).
    """
    import ray

    from .placement import actor_options, labelled_nodes

    labelled = labelled_nodes()
    task = ray.remote(max_calls=1)(_profile_here)  # the worker exits after it: none stays under the quota
    profiles, where = {}, {}
    model_ref = ray.put(model)
    inputs_ref = ray.put(tuple(inputs))
    for tier in topology.path:
        node = tier.node_names()[0]
        opts = actor_options(topology, address, node, tier.name, labelled)
        opts["num_cpus"] = 0
        try:
            out = ray.get(task.options(**opts).remote(model_ref, inputs_ref, seconds, f"profile of {tier.name} ({node})"), timeout=600)
        except ray.exceptions.GetTimeoutError:
            raise PipelineError(
                f"profiling on {node} (tier {tier.name}) took over 10 minutes: is that node alive and its quota sane?"
            ) from None
        except ray.exceptions.RayTaskError as exc:
            raise PipelineError(f"profiling on {node} (tier {tier.name}) failed: {exc.cause if hasattr(exc, 'cause') else exc}") from None
        profiles[tier.name] = out["ops"]
        where[tier.name] = {"node": node, "host": out["host"], "cgroup": out["cgroup"], "torch": out["torch"]}
    return {"profiles": profiles, "measured_on": where}


def save_profiles(path: str | Path, result: dict, model: str, topology: Topology, seconds: float) -> None:
    """The profiles, as ``CostModel.load_profiles`` reads them, with ``_about`` saying where they come from."""
    about = {"model": model, "topology": topology.name, "seconds_per_tier": seconds, "measured_on": result["measured_on"]}
    if topology.lab is not None:
        about["lab_cpu_scale"] = topology.lab.cpu_scale
    Path(path).write_text(json.dumps({"_about": about, **result["profiles"]}, indent=1))


def measure_and_save(args, model, inputs, graph, topology: Topology, predicted, console):
    """``tierpipe profile --address``: measure, print measured against predicted per tier, save to ``--out``;
    returns the cost model with the measured profiles (the CLI's per-op table shows it)."""
    from partition.cost import CostModel

    from .connect import connect_driver

    connect_driver(args.address, topology, log_to_driver=False)
    with console.status(f"profiling {args.model} on {len(topology.path)} tiers, {args.seconds:g} s each..."):
        result = profile_tiers(model, inputs, topology, args.address, args.seconds)
    measured = CostModel(graph, topology, result["profiles"])
    for t, tier in enumerate(topology.path):
        on = result["measured_on"][tier.name]
        m, p = float(measured.table[:, t].sum()), float(predicted.table[:, t].sum())
        console.print(
            f"{tier.name} on {on['node']} ({on['cgroup'] or 'no cgroup'}): whole model {m * 1e3:.1f} ms measured, "
            f"{p * 1e3:.1f} ms predicted" + (f" ({(p - m) / m:+.0%})" if m else "")
        )
    if args.out:
        save_profiles(args.out, result, args.model, topology, args.seconds)
        console.print(f"profiles written to {args.out}: `tierpipe partition/run ... --profiles {args.out}`")
    return measured
