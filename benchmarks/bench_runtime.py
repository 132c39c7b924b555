"""Streaming runtime figures, measured in one run on this machine.

    python benchmarks/bench_runtime.py

(a) pipeline efficiency: 3 stages with emulated 20 ms compute each; target >= 95% of the ideal 50 frames/s.
(b) against what a Ray user writes instead, at its best: a plain actor chain with 4 frames in flight,
    same stages, raw tensors, batch 1; tiny payloads, 1 MiB activations, ResNet-18 in 3 stages;
    target >= 1.2x on tiny and 1 MiB (batching reported separately).
(c) 1 MB activations: achieved MB/s per hop, and bytes on the wire per codec (int8 <= 26% of raw fp32).
(d) emulated link accuracy: measured transfer time within 10% of bytes/bandwidth + latency.
(e) start-up on smart_city (21 nodes): from Pipeline(...) to the first result, Ray's own start included, with
    the nodes packed (pack="auto") and with a process per node (pack="node"); the floor: a bare local Ray's
    start. Target: under 10 s packed.
(f) CPU per delivered frame on smart_city (QueueNet, 16 cameras, emulated, 160 frames/s offered): the CPU
    seconds of the driver and every Ray process (raylet, GCS, workers), from /proc over the stream, per frame
    delivered; split by kind of process; a process per node (what every run used before packing) against
    packed nodes. Target (issue 22): packed at least 3x lower.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import save, started  # noqa: E402
from benchmarks._profile import where_cpu_goes  # noqa: E402
from partition import Topology, capture, partition  # noqa: E402
from runtime.pipeline import Pipeline  # noqa: E402
from tests.models import Chain  # noqa: E402


def chain_topology(emulate: bool, bandwidth: str = "1 Gbit/s", latency: str = "1 ms") -> Topology:
    return Topology.from_dict(
        {
            "name": "bench",
            "emulate": emulate,
            "tiers": [{"name": n, "nodes": 1, "speed": 1.0} for n in ("device", "gateway", "edge")],
            "links": [
                {"from": "device", "to": "gateway", "bandwidth": bandwidth, "latency": latency},
                {"from": "gateway", "to": "edge", "bandwidth": bandwidth, "latency": latency},
            ],
            "sources": [{"count": 1, "fps": 1000, "policy": "block"}],
        }
    )


class Wide(nn.Module):
    """Three stages whose cuts carry [1, 64, 64, 64] float32 = 1 MiB."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(64, 64, 1)
        self.b = nn.Conv2d(64, 64, 1)
        self.c = nn.Conv2d(64, 64, 1)

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


def plan_for(model, example, topo, pins, **kw):
    return partition(capture(model, example, repeats=1), topo, pins=pins, **kw)


def efficiency(frames: int = 300) -> dict:
    topo = chain_topology(emulate=True)
    torch.manual_seed(0)
    model, x = Chain(16, 6).eval(), (torch.randn(1, 16),)
    plan = plan_for(model, x, topo, {"layers.1": "device", "layers.3": "gateway", "layers.5": "edge"})
    plan = dataclasses.replace(plan, predicted=dataclasses.replace(plan.predicted, stage_compute_s=(0.02, 0.02, 0.02)))
    with Pipeline(plan, model, topo, max_batch=1, credits=4) as pipe:
        pipe.run([x] * 20)  # warm up
        start = time.perf_counter()
        pipe.run([x] * frames)
        seconds = time.perf_counter() - start
    fps = frames / seconds
    print(f"(a) 3 stages x emulated 20 ms: {fps:.1f} fps = {fps / 50:.1%} of the ideal 50 fps")
    return {"frames": frames, "fps": fps, "ideal_fps": 50.0, "efficiency": fps / 50.0, "target": 0.95}


def plain_chain_fps(stages, x, frames: int, in_flight: int = 4) -> float:
    """What a Ray user writes instead, at its best: one actor per stage, the driver chaining
    ``actor.f.remote(ref)`` calls with ``in_flight`` frames in flight (it never waits for each one)."""
    import collections

    import ray

    @ray.remote(num_cpus=0)
    class Hop:
        def __init__(self, stage):
            torch.set_num_threads(1)
            self.stage = stage

        def f(self, values):
            with torch.inference_mode():
                out = self.stage(values)
            return out if self.stage.last else dict(out)

    hops = [Hop.remote(s) for s in stages]
    value = dict(zip(stages[0].inputs, x))

    def chain():
        ref = value
        for h in hops:
            ref = h.f.remote(ref)
        return ref

    ray.get([chain() for _ in range(8)])  # warm up
    pending: collections.deque = collections.deque()
    start = time.perf_counter()
    for _ in range(frames):
        pending.append(chain())
        if len(pending) >= in_flight:
            ray.get(pending.popleft())
    ray.get(list(pending))
    fps = frames / (time.perf_counter() - start)
    for h in hops:
        ray.kill(h)
    return fps


def versus_plain_chain(name: str, model, x, pins: dict, frames: int, max_batch: int = 1) -> dict:
    """tierpipe's pipeline against the plain actor chain: same stages, raw tensors, no emulation."""
    topo = chain_topology(emulate=False)
    plan = plan_for(model, x, topo, pins)
    with Pipeline(plan, model, topo, max_batch=max_batch, credits=4) as pipe:
        pipe.run([x] * 20)
        start = time.perf_counter()
        pipe.run([x] * frames)
        ours = frames / (time.perf_counter() - start)
    chain = plain_chain_fps(plan.build_stages(model), x, frames)
    print(
        f"(b) {name:22s} batch {max_batch}: tierpipe {ours:7.1f} fps, plain Ray chain (4 in flight) {chain:7.1f} fps -> {ours / chain:.2f}x"
    )
    return {
        "payload": name,
        "max_batch": max_batch,
        "frames": frames,
        "tierpipe_fps": ours,
        "plain_chain_fps": chain,
        "ratio": ours / chain,
    }


def per_hop_overhead() -> dict:
    """(b) tiny payloads, 1 MiB activations and ResNet-18 in 3 stages, batch 1 on both sides (and batch 8 for us)."""
    from partition.zoo import get_model

    torch.manual_seed(0)
    tiny, tiny_x = Chain(16, 6).eval(), (torch.randn(1, 16),)
    wide, wide_x = Wide().eval(), (torch.randn(1, 64, 64, 64),)
    resnet, resnet_x = get_model("resnet18")
    rows = [
        versus_plain_chain("tiny [1, 16]", tiny, tiny_x, {"layers.1": "device", "layers.3": "gateway", "layers.5": "edge"}, 1500),
        versus_plain_chain("1 MiB activations", wide, wide_x, {"a": "device", "b": "gateway", "c": "edge"}, 150),
        versus_plain_chain("resnet18, 3 stages", resnet, resnet_x, {"layer1": "device", "layer3": "gateway", "fc": "edge"}, 60),
        versus_plain_chain(
            "tiny [1, 16]", tiny, tiny_x, {"layers.1": "device", "layers.3": "gateway", "layers.5": "edge"}, 1500, max_batch=8
        ),
    ]
    return {
        "rows": rows,
        "target_ratio": 1.2,
        "met": all(r["ratio"] >= 1.2 for r in rows if r["max_batch"] == 1 and "resnet" not in r["payload"]),
    }


def big_activations(frames: int = 40) -> dict:
    torch.manual_seed(0)
    model, x = Wide().eval(), (torch.randn(1, 64, 64, 64),)
    topo = chain_topology(emulate=False)
    out = {"activation_bytes": 64 * 64 * 64 * 4, "codecs": {}}
    for codec in ("raw", "fp16", "int8", "int8+zstd"):
        plan = plan_for(model, x, topo, {"a": "device", "b": "gateway", "c": "edge"}, codec=codec)
        with Pipeline(plan, model, topo, max_batch=1, credits=4) as pipe:
            pipe.run([x] * 5)
            start = time.perf_counter()
            pipe.run([x] * frames)
            seconds = time.perf_counter() - start
            report = pipe.report()
        link = report["links"][0]
        hop_mb_s = link["bytes_per_frame"] * frames / seconds / 1e6  # sustained bytes through each hop
        out["codecs"][codec] = {
            "wire_bytes_per_frame": link["bytes_per_frame"],
            "ratio_to_raw_fp32": link["bytes_per_frame"] / out["activation_bytes"],
            "hop_MB_per_s": hop_mb_s,
            "frames_per_s": frames / seconds,
            "push_ms_mean": link["transfer_ms_mean"],
        }
        print(
            f"(c) {codec:9s}: {link['bytes_per_frame']:>10,.0f} B/frame ({link['bytes_per_frame'] / out['activation_bytes']:.1%} "
            f"of fp32), {hop_mb_s:7.1f} MB/s per hop, {frames / seconds:5.1f} frames/s"
        )
    out["int8_ratio"] = out["codecs"]["int8"]["ratio_to_raw_fp32"]
    out["target_int8_ratio"] = 0.26
    return out


def emulated_link(frames: int = 20) -> dict:
    torch.manual_seed(0)
    model, x = Wide().eval(), (torch.randn(1, 64, 64, 64),)
    rows = []
    for bandwidth_mbps, latency_ms in ((100, 10), (400, 20)):
        topo = chain_topology(emulate=True, bandwidth=f"{bandwidth_mbps} Mbit/s", latency=f"{latency_ms} ms")
        plan = plan_for(model, x, topo, {"a": "device", "b": "gateway", "c": "edge"})
        with Pipeline(plan, model, topo, max_batch=1, credits=1) as pipe:
            for _ in range(frames):
                pipe.run([x])  # one at a time: no queueing on the link
            report = pipe.report()
        link = report["links"][0]
        expected = link["bytes_per_frame"] * 8 / (bandwidth_mbps * 1e6) * 1e3 + latency_ms
        measured = link["transfer_ms_mean"]
        rows.append(
            {
                "bandwidth_mbps": bandwidth_mbps,
                "latency_ms": latency_ms,
                "bytes": link["bytes_per_frame"],
                "expected_ms": expected,
                "measured_ms": measured,
                "error": abs(measured - expected) / expected,
            }
        )
        print(
            f"(d) {bandwidth_mbps} Mbit/s + {latency_ms} ms, {link['bytes_per_frame']:,.0f} B: expected {expected:.1f} ms, "
            f"measured {measured:.1f} ms ({rows[-1]['error']:.1%} off)"
        )
    return {"links": rows, "max_error": max(r["error"] for r in rows), "target_max_error": 0.10}


def _smart_city_queuenet():
    """The demo's model and smart_city with its cameras streaming what QueueNet takes: ``(model, plan, topo)``."""
    from examples.smart_city.model import load_model

    model, example = load_model()
    city = Topology.load("smart_city")
    dtype = str(example[0].dtype).removeprefix("torch.")
    topo = city.model_copy(update={"sources": [s.model_copy(update={"shape": None, "dtype": dtype}) for s in city.sources]})
    return model, example, partition(capture(model, example, timing="analytic"), topo, "throughput"), topo


def startup_smart_city() -> dict:
    """(e) From ``Pipeline(...)`` to the first result on smart_city (21 nodes), Ray's own start included (call it
    with no Ray running): nodes packed (``pack="auto"``) and a process per node (``pack="node"``); the floor is
    a bare local Ray started on this machine."""
    import ray

    model, example, plan, topo = _smart_city_queuenet()
    out: dict = {}
    for pack in ("auto", "node"):
        with started(plan, model, topo, example, emulate=True, pack=pack) as (_, figures):
            out[pack] = figures
        print(
            f"(e) smart_city, pack={pack}: {figures['processes']} processes; first result {figures['first_result_s']:.1f} s "
            f"after Pipeline(...) (ready {figures['ready_s']:.1f} s)"
        )
        time.sleep(2)
    start = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    out["ray_floor_s"] = time.perf_counter() - start
    ray.shutdown()
    out["target_first_result_s"] = 10.0
    print(f"    the floor: a bare local Ray starts in {out['ray_floor_s']:.1f} s here")
    return out


def _ray_cpu_s() -> dict[int, tuple[str, float]]:
    """pid -> (kind, CPU seconds so far) for this driver and every Ray process on this machine (/proc)."""
    import os

    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        if pid == os.getpid():
            kind = "driver"
        elif "raylet" in cmd:
            kind = "raylet"
        elif "gcs_server" in cmd:
            kind = "gcs"
        elif cmd.startswith("ray::"):
            kind = "actors"
        elif "ray" in cmd and "python" in cmd:
            kind = "other ray"
        else:
            continue
        out[pid] = (kind, (int(fields[11]) + int(fields[12])) / tick)  # utime + stime
    return out


def cpu_per_frame_smart_city(seconds: float = 20.0, fps_per_camera: float = 10.0, pack: str = "auto") -> dict:
    """(f) CPU milliseconds per delivered frame, whole system, on smart_city at its cameras' rate."""
    model, _, plan, topo = _smart_city_queuenet()
    with Pipeline(plan, model, topo, emulate=True, pack=pack) as pipe:
        warm = pipe.stream(3.0, fps=fps_per_camera)  # warm: every actor has run frames
        time.sleep(2.0)  # Ray's worker pool settles (processes it starts count as actors' CPU)
        before, wall = _ray_cpu_s(), time.perf_counter()
        report = pipe.stream(seconds, fps=fps_per_camera)
        after, wall = _ray_cpu_s(), time.perf_counter() - wall
        where: list = []
        if pack == "auto":  # then, apart from the measured run: where the node processes' CPU goes
            pids = [pid for pid, (kind, _) in _ray_cpu_s().items() if kind == "actors"]
            done = threading.Thread(target=lambda: pipe.stream(6.0, fps=fps_per_camera), daemon=True)
            done.start()
            where = where_cpu_goes(pids, 5.0)
            done.join()
    by_kind: dict[str, float] = {}
    for pid, (kind, cpu) in after.items():
        by_kind[kind] = by_kind.get(kind, 0.0) + cpu - (before[pid][1] if pid in before else 0.0)
    frames = report["frames_delivered"] - warm["frames_delivered"]  # the report counts from the pipeline's start
    total = sum(by_kind.values())
    out = {
        "frames_delivered": frames,
        "wall_s": wall,
        "fps": frames / wall,
        "cpu_s": total,
        "cpu_ms_per_frame": total / max(frames, 1) * 1e3,
        "cpu_ms_per_frame_by_kind": {k: v / max(frames, 1) * 1e3 for k, v in sorted(by_kind.items())},
        "cores_busy": total / wall,
        "latency_ms_p50": report["latency_ms"].get("p50"),
        "latency_ms_p99": report["latency_ms"].get("p99"),
        "where_node_cpu_goes": where,  # py-spy, a separate 6 s run: functions by share of the node processes' samples
    }
    kinds = ", ".join(f"{k} {v:.2f}" for k, v in out["cpu_ms_per_frame_by_kind"].items())
    print(
        f"(f) smart_city, pack={pack}, at {out['fps']:.0f} frames/s: {out['cpu_ms_per_frame']:.2f} CPU-ms per delivered frame "
        f"({kinds}); {out['cores_busy']:.2f} cores busy; p50 {out['latency_ms_p50']:.0f} ms, p99 {out['latency_ms_p99']:.0f} ms"
    )
    if where:
        print("    where the node processes' CPU goes (py-spy, a separate 6 s run; waits left out):")
    for row in where[:8]:
        print(f"    {row['share']:6.1%}  {row['function']}")
    return out


def main() -> None:
    import ray

    logging.getLogger("ray").setLevel(logging.ERROR)
    e = startup_smart_city()  # first: each pipeline starts its own Ray, as a user's would
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    try:
        a = efficiency()
        b = per_hop_overhead()
        c = big_activations()
        d = emulated_link()
        f = {pack: cpu_per_frame_smart_city(pack=pack) for pack in ("auto", "node")}
        f["cut"] = f["node"]["cpu_ms_per_frame"] / f["auto"]["cpu_ms_per_frame"]
        print(f"(f) packed: {f['cut']:.1f}x less CPU per delivered frame than a process per node (target >= 3x)")
    finally:
        ray.shutdown()
    save(
        "runtime",
        {
            "a_pipeline_efficiency": a,
            "b_per_hop_overhead": b,
            "c_big_activations": c,
            "d_emulated_link": d,
            "e_startup_smart_city": e,
            "f_cpu_per_frame_smart_city": f,
            "met": a["efficiency"] >= 0.95 and b["met"] and c["int8_ratio"] <= 0.26 and d["max_error"] <= 0.10,
        },
    )


if __name__ == "__main__":
    main()
