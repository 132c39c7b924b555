"""What the live view costs the pipeline: fps and p99 with and without it, in one run on this machine.

    python benchmarks/bench_view.py [--seconds 15] [--rounds 3]

QueueNet on the demo's midtown topology (16 cameras, 4 gateways, 1 edge; emulated tiers and links), every
camera at 10 frames/s (160 frames/s offered), the same pipeline streamed in alternating rounds: without a view,
then with one (a :class:`~runtime.view.probe.PipelineProbe` reading every stage twice a second, the server
pushing a demo-sized update: 16 camera frames, 600 vehicles, to a page connected over its WebSocket). The
rounds alternate so that a drift of the machine's load hits both alike. Target: the view costs under 5% fps
and adds under 10% to p99.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import save  # noqa: E402
from examples.smart_city.model import SAMPLE_FRAMES, load_model  # noqa: E402
from examples.smart_city.scenario import Scenario  # noqa: E402
from partition import Topology, capture, partition  # noqa: E402
from runtime import Pipeline  # noqa: E402
from runtime.view.probe import PipelineProbe  # noqa: E402
from runtime.view.server import ViewServer  # noqa: E402


def _page(url: str, stop: threading.Event, counts: dict) -> None:
    """A page that reads every update (what a browser tab costs the server)."""
    import aiohttp

    async def main():
        async with aiohttp.ClientSession() as session, session.ws_connect(url.replace("http", "ws") + "ws") as ws:
            while not stop.is_set():
                try:
                    msg = await ws.receive(timeout=0.5)
                except asyncio.TimeoutError:
                    continue
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                counts["messages"] += 1
                counts["bytes"] += len(msg.data)

    asyncio.run(main())


def _city_payload(rng: np.random.Generator, cameras: int) -> dict:
    frames = [
        {
            "index": i,
            "frame": {"w": 32, "h": 128, "data": base64.b64encode(rng.integers(0, 255, 32 * 128, dtype=np.uint8).tobytes()).decode()},
        }
        for i in range(cameras)
    ]
    return {"vehicles": rng.uniform(0, 1000, (600, 3)).round(1).tolist(), "cameras": frames, "signals": {}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fps", type=float, default=10.0, help="frames/s per camera")
    args = ap.parse_args()
    scenario = Scenario.load("midtown")
    topo = Topology.from_dict(scenario.topology(fps=args.fps))
    model, _ = load_model()
    sample = torch.from_numpy(np.load(SAMPLE_FRAMES))
    plan = partition(capture(model, (sample[:1],), timing="analytic"), topo, "throughput", codec="auto", model_name="queuenet")
    rng = np.random.default_rng(0)
    rows = []
    with Pipeline(plan, model, topo, emulate=True) as pipe:
        pipe.stream(3.0, inputs=[(sample[i : i + 1],) for i in range(8)])  # warm-up
        for r in range(args.rounds):
            for view in (False, True):
                server = probe = None
                stop, counts = threading.Event(), {"messages": 0, "bytes": 0}
                if view:
                    server, probe = ViewServer(port=0), PipelineProbe(pipe)
                    server.start()
                    server.set_static({"title": "bench", "mode": "demo", "network": None, "cameras": [], "tiers": probe.static()})
                    page = threading.Thread(target=_page, args=(server.url, stop, counts), daemon=True)
                    page.start()
                    time.sleep(0.5)

                def on_update(report, server=server, probe=probe):
                    if server is not None:
                        server.publish({"phase": "camera", "pipeline": probe.update(), **_city_payload(rng, len(scenario.cameras))})

                t0, before = time.perf_counter(), pipe.ledger.total
                report = pipe.stream(args.seconds, inputs=[(sample[i : i + 1],) for i in range(8)], on_update=on_update)
                wall = time.perf_counter() - t0
                if server is not None:
                    stop.set()
                    server.close()
                row = {
                    "round": r,
                    "view": view,
                    "fps": (report["frames_delivered"] - before) / wall,
                    "p50_ms": report["latency_recent_ms"].get("p50"),
                    "p99_ms": report["latency_recent_ms"].get("p99"),
                    "page_messages": counts["messages"],
                    "page_kb_per_s": counts["bytes"] / 1e3 / args.seconds,
                }
                rows.append(row)
                print(
                    f"round {r} view={'on ' if view else 'off'}: {row['fps']:.1f} fps, p50 {row['p50_ms']:.1f} ms, "
                    f"p99 {row['p99_ms']:.1f} ms"
                    + (f", page got {counts['messages']} updates ({row['page_kb_per_s']:.0f} kB/s)" if view else "")
                )
    off = [x for x in rows if not x["view"]]
    on = [x for x in rows if x["view"]]
    summary = {
        "offered_fps": args.fps * len(scenario.cameras),
        "fps_off": float(np.median([x["fps"] for x in off])),
        "fps_on": float(np.median([x["fps"] for x in on])),
        "p99_off_ms": float(np.median([x["p99_ms"] for x in off])),
        "p99_on_ms": float(np.median([x["p99_ms"] for x in on])),
    }
    summary["fps_cost"] = 1 - summary["fps_on"] / summary["fps_off"]
    summary["p99_added"] = summary["p99_on_ms"] / summary["p99_off_ms"] - 1
    print(
        f"median over {args.rounds} rounds: without view {summary['fps_off']:.1f} fps, p99 {summary['p99_off_ms']:.1f} ms; "
        f"with view {summary['fps_on']:.1f} fps, p99 {summary['p99_on_ms']:.1f} ms "
        f"(fps {-summary['fps_cost']:+.1%}, p99 {summary['p99_added']:+.1%})"
    )
    save("view", {"rows": rows, "summary": summary, "seconds": args.seconds})


if __name__ == "__main__":
    main()
