"""A city on one machine: 1,000 cameras -> 100 gateways -> 10 edge servers, emulated (topologies/city.yaml).

    python benchmarks/bench_city.py [--seconds 60] [--fps 1] [--pack auto]

Streams the demo's QueueNet through the city at each camera's rate (1 frame/s: 1,000 frames/s in all),
the nodes packed into a few processes (``Pipeline(pack=...)``), and reports:

- start-up: from ``Pipeline(...)`` (Ray not yet running) to the first result, and its floor: a bare
  local Ray started and stopped on this machine;
- sustained frames/s over the stream, end-to-end latency p50/p99 (emulated: links and tiers take the
  time the topology says);
- the memory (RSS) of the driver and of each Ray process, mid-stream;
- frames lost (admitted and never delivered), delivered twice (the driver's duplicates: 0 by design;
  sinks drop replayed repeats before that, counted apart), and dropped by the cameras' drop-oldest
  policy (a host too slow to keep up sheds frames there, before they are numbered).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import save, started  # noqa: E402
from partition import Topology, capture, partition  # noqa: E402
from runtime.emulation_limits import limits_sentence  # noqa: E402


def ray_floor_s() -> float:
    """A bare local Ray started and stopped: what any pipeline on this machine pays before its own start."""
    import ray

    start = time.perf_counter()
    ray.init(address="local", include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    up = time.perf_counter() - start
    ray.shutdown()
    return up


def memory_mb() -> dict[str, float]:
    """RSS in MB of this driver and of every Ray process (/proc), by process title."""
    out: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            status = (entry / "status").read_text()
        except OSError:
            continue
        if int(entry.name) == os.getpid():
            name = "driver"
        elif cmd.startswith("ray::"):
            name = cmd.split()[0]
        elif "raylet" in cmd or "gcs_server" in cmd:
            name = "raylet" if "raylet" in cmd else "gcs_server"
        else:
            continue
        rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0) / 1024
        key, i = name, 1
        while key in out:
            i += 1
            key = f"{name} #{i}"
        out[key] = round(rss, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--fps", type=float, default=None, help="frames/s per camera (default: the topology's, 1)")
    parser.add_argument("--pack", default="auto", help="auto, tier, node, or a number of processes")
    parser.add_argument("--topology", default="city")
    args = parser.parse_args()
    pack = int(args.pack) if args.pack.isdigit() else args.pack

    from examples.smart_city.model import load_model

    model, example = load_model()
    topo = Topology.load(args.topology)
    plan = partition(capture(model, example, timing="analytic"), topo, "throughput")
    floor = ray_floor_s()
    print(f"{topo.name}: {sum(t.nodes for t in topo.path)} nodes, {len(topo.source_nodes())} cameras; bare Ray start {floor:.1f} s")
    mid: dict = {}
    with started(plan, model, topo, example, emulate=True, pack=pack) as (pipe, figures):
        processes, ready, first = figures["processes"], figures["ready_s"], figures["first_result_s"]
        print(f"start-up: {processes} processes ready in {ready:.1f} s, first result after {first:.1f} s")
        before = pipe.ledger.total
        sampler = threading.Timer(args.seconds / 2, lambda: mid.update(memory_mb()))  # mid-stream
        sampler.start()
        streaming = time.perf_counter()
        report = pipe.stream(args.seconds, fps=args.fps)
        sampler.join()
        wall = time.perf_counter() - streaming
        delivered = pipe.ledger.total - before
        lost = pipe.admitted - pipe.ledger.total
        twice = pipe.ledger.duplicates
    offered = report["offered"]["fps"]
    out = {
        "topology": topo.name,
        "nodes": sum(t.nodes for t in topo.path),
        "pack": args.pack,
        "processes": processes,
        "predicted_latency_ms": plan.predicted.latency_s * 1e3,
        "predicted_fps": plan.predicted.throughput_fps,
        "ray_floor_s": floor,
        "ready_s": ready,
        "first_result_s": first,
        "seconds": args.seconds,
        "offered_fps": offered,
        "sustained_fps": delivered / args.seconds,
        "wall_s_with_drain": wall,
        "latency_ms_p50": report["latency_ms"].get("p50"),
        "latency_ms_p99": report["latency_ms"].get("p99"),
        "frames_delivered": delivered,
        "frames_lost": lost,
        "delivered_twice": twice,
        "dropped_by_cameras": report["drops"],
        "repeats_dropped_at_sinks": report["duplicates_dropped"],
        "emulation_limits": limits_sentence(report.get("emulation_limits") or []),
        "measured_bottleneck": report.get("measured_bottleneck"),
        "memory_mb": mid,
        "memory_mb_total": round(sum(mid.values()), 1),
    }
    print(
        f"{topo.name}: {out['sustained_fps']:.0f} frames/s sustained of {offered:.0f} offered for {args.seconds:.0f} s; "
        f"p50 {out['latency_ms_p50']:.0f} ms, p99 {out['latency_ms_p99']:.0f} ms (the plan predicts "
        f"{out['predicted_latency_ms']:.0f} ms a frame, queueing left out); lost {lost}, delivered twice {twice}, "
        f"dropped by cameras {report['drops']}; memory {out['memory_mb_total']:.0f} MB in {len(mid)} processes"
    )
    if out["emulation_limits"]:
        print(out["emulation_limits"])
    save("city", out)


if __name__ == "__main__":
    main()
