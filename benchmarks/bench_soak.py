"""A long ``stream()`` on the ``local`` topology: does memory stay flat and latency steady?

    python benchmarks/bench_soak.py [--minutes 5]

Every minute: the driver's and every actor's resident memory, and the end-to-end latency
of the last 1,000 frames delivered (about the last minute). Target: after the first minute, memory grows
< 2% and latency does not drift.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import save  # noqa: E402
from partition import Topology, capture, partition  # noqa: E402
from runtime.pipeline import Pipeline  # noqa: E402
from tests.models import Chain  # noqa: E402


def rss_mib(pid: int) -> float:
    """Resident memory of a process (Linux /proc)."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    import ray

    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=5.0)
    args = parser.parse_args()
    logging.getLogger("ray").setLevel(logging.ERROR)
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    topo = Topology.load("local")
    torch.manual_seed(0)
    model, x = Chain(64, 6).eval(), (torch.randn(1, 64),)
    plan = partition(
        capture(model, x, timing="analytic"), topo, "throughput", pins={"layers.1": "device", "layers.3": "gateway", "layers.5": "edge"}
    )
    rows: list[dict] = []
    with Pipeline(plan, model, topo) as pipe:
        pids = {n: ray.get(h.pid.remote()) for n, h in pipe.stages.items()}
        state = {"next": time.perf_counter() + 60, "frames": 0, "lat_count": 0, "lat_sum": 0.0}
        start = time.perf_counter()

        def sample(report: dict) -> None:
            now = time.perf_counter()
            if now < state["next"]:
                return
            state["next"] += 60
            mem = {n: rss_mib(p) for n, p in pids.items() if os.path.exists(f"/proc/{p}")}
            sink = [t for t in report["tiers"]][-1]
            rows.append(
                {
                    "minute": len(rows) + 1,
                    "driver_rss_mib": rss_mib(os.getpid()),
                    "actors_rss_mib": mem,
                    "frames_delivered": report["frames_delivered"],
                    "fps_last_minute": (report["frames_delivered"] - state["frames"]) / 60.0,
                    "latency_ms": report["latency_recent_ms"],
                    "sink_frames": sink["frames"],
                    "elapsed_s": round(now - start, 1),
                }
            )
            state["frames"] = report["frames_delivered"]
            r = rows[-1]
            print(
                f"minute {r['minute']}: driver {r['driver_rss_mib']:.1f} MiB, actors "
                f"{sum(mem.values()):.1f} MiB, {r['fps_last_minute']:.1f} fps, p50 {r['latency_ms'].get('p50', 0):.1f} ms",
                flush=True,
            )

        report = pipe.stream(seconds=args.minutes * 60, on_update=sample)
    ray.shutdown()
    first = rows[0]
    last = rows[-1]
    driver_growth = last["driver_rss_mib"] / first["driver_rss_mib"] - 1
    actor_growth = sum(last["actors_rss_mib"].values()) / sum(first["actors_rss_mib"].values()) - 1
    p50s = [r["latency_ms"].get("p50", 0) for r in rows]
    save(
        "soak",
        {
            "minutes": args.minutes,
            "rows": rows,
            "frames_delivered": report["frames_delivered"],
            "drops": report["drops"],
            "driver_growth_after_minute_1": driver_growth,
            "actor_growth_after_minute_1": actor_growth,
            "latency_p50_ms_by_minute": p50s,
            "met": driver_growth < 0.02 and actor_growth < 0.02,
        },
    )


if __name__ == "__main__":
    main()
