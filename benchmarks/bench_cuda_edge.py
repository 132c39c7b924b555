"""The edge-server tier's CUDA path: the real stage actor code, its stage on the GPU, fed 16 camera streams.

    python benchmarks/bench_cuda_edge.py          # on a machine with CUDA (prints "no CUDA" elsewhere)

Drives ``runtime.actors.StageWorker`` directly (no Ray: the actor is a plain class) as the
smart_city edge stage (``accelerator: cuda``): frames packed as on the wire, fan-in batches
of up to 16, results compared with the eager model on the CPU.
"""

from __future__ import annotations

import asyncio
import pickle
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import save  # noqa: E402
from partition import Topology, capture, partition  # noqa: E402
from partition.graph import TensorSpec  # noqa: E402
from partition.zoo import get_model  # noqa: E402
from runtime.actors import StageConfig, StageWorker  # noqa: E402
from runtime.wire import Frame, pack  # noqa: E402


async def drive(worker: StageWorker, frames: list[bytes], n: int) -> tuple[list, float]:
    start = time.perf_counter()
    await worker.push(frames)
    got = []
    while len(got) < n:
        reply = await worker.take(4096, 0.5)
        got += pickle.loads(pickle.dumps(reply["results"]))  # as they reach the driver: result tensors travel as numpy
    return got, time.perf_counter() - start


# what the edge runs: the stage the partitioner gives it on smart_city, and everything after the stem
# (the tiers below only send the stem's activations): a GPU is for the second
CASES = {"planned": {"stem": "device"}, "all_after_stem": {"stem": "device", "layer1": "edge"}}


def main(model_name: str = "resnet50", frames_n: int = 64) -> None:
    if not torch.cuda.is_available():
        print("no CUDA on this machine: nothing to check")
        save("cuda_edge", {"cuda": False})
        return
    model, example = get_model(model_name)
    graph = capture(model, example, repeats=3)
    out = {"cuda": True, "gpu": torch.cuda.get_device_name(0), "model": model_name}
    for case, pins in CASES.items():
        out[case] = edge_case(model, example, graph, pins, frames_n, case)
    out["met"] = all(out[c]["cuda"]["relative"] < 1e-2 for c in CASES)
    save("cuda_edge", out)


def edge_case(model, example, graph, pins: dict, frames_n: int, case: str) -> dict:
    """The edge stage of the plan made with ``pins``, on the CPU and on CUDA: frames/s and error vs eager."""
    plan = partition(graph, Topology.load("smart_city"), pins=pins, model_name=case)
    edge = len(plan.tiers) - 1
    stages = plan.build_stages(model)
    inputs = [(torch.randn(example[0].shape),) for _ in range(frames_n)]
    # what reaches the edge: run the lower stages on the CPU, as the cameras and gateways would
    below = []
    with torch.inference_mode():
        for x in inputs:
            values = dict(zip(stages[0].inputs, x))
            for s in stages[:edge]:
                values = s(values)
            below.append(values)
        torch.set_num_threads(torch.get_num_threads())
        want = [model(*x) for x in inputs]
    expected = {c.name: TensorSpec(c.shape, c.dtype, c.raw_bytes) for c in plan.links[-1].tensors}
    packed = [pack(Frame(i % 16, i // 16, [time.time()], v)) for i, v in enumerate(below)]
    out: dict = {"edge_nodes": len(plan.stages[edge].nodes)}
    for device in ("cpu", "cuda"):
        cfg = StageConfig(
            tier=edge,
            tier_name="edge",
            node="edge-0",
            expected=expected,
            device=device,
            last=True,
            max_batch=16,
            max_wait_s=0.005,
            queue_frames=256,
            threads=torch.get_num_threads(),
        )
        worker = StageWorker(cfg, plan.build_stages(model, tiers=[edge])[0])
        assert worker.versions[0].runner.device.type == device
        asyncio.run(drive(worker, packed[:16], 16))  # warm up
        worker = StageWorker(cfg, plan.build_stages(model, tiers=[edge])[0])
        got, seconds = asyncio.run(drive(worker, packed, frames_n))
        order = {(s, q): v for s, q, v, _ in got}
        outs = [order[(i % 16, i // 16)] for i in range(frames_n)]
        diff = max(float((o - w).abs().max()) for o, w in zip(outs, want))
        scale = max(float(w.abs().max()) for w in want)
        out[device] = {
            "frames_per_s": frames_n / seconds,
            "batchable": worker.versions[0].runner.batchable,
            "mean_batch": worker.metrics.batch.total / max(worker.metrics.batch.count, 1),
            "max_abs_diff_vs_eager_cpu": diff,
            "relative": diff / scale,
        }
        print(
            f"{case}: edge stage ({out['edge_nodes']} ops) on {device}: {frames_n / seconds:8.1f} frames/s, "
            f"batchable={worker.versions[0].runner.batchable}, "
            f"mean batch {out[device]['mean_batch']:.1f}, max |diff| vs eager CPU {diff:.2e} ({diff / scale:.1e} of range)"
        )
    out["speedup_cuda_vs_cpu"] = out["cuda"]["frames_per_s"] / out["cpu"]["frames_per_s"]
    return out


if __name__ == "__main__":
    main()
