"""Predicted vs measured whole-model latency on this host, and capture time, for every zoo model.

    python benchmarks/bench_cost_model.py

Targets: median absolute error within 15%; ResNet-50 captured and profiled in under 10 s.
The measurement is independent of the capture: eager forwards of the unmodified model,
median of 15 after 3 warm-ups.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import save  # noqa: E402
from partition import CostModel, Topology, capture  # noqa: E402
from partition.zoo import get_model, model_names  # noqa: E402


def measure(model, inputs, repeats: int = 15, warmup: int = 3) -> float:
    with torch.inference_mode():
        for _ in range(warmup):
            model(*inputs)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(*inputs)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    rows = []
    host = Topology.from_dict({"name": "this_host", "tiers": [{"name": "host", "speed": 1.0}]})  # speed 1.0 = this host
    for name in model_names():
        model, inputs = get_model(name)
        start = time.perf_counter()
        graph = capture(model, inputs)
        capture_s = time.perf_counter() - start
        predicted = float(CostModel(graph, host).table[:, 0].sum())
        measured = measure(model, inputs)
        rows.append(
            {
                "model": name,
                "nodes": len(graph.nodes),
                "gflops": graph.total_flops / 1e9,
                "predicted_ms": predicted * 1e3,
                "measured_ms": measured * 1e3,
                "abs_error": abs(predicted - measured) / measured,
                "capture_s": capture_s,
            }
        )
        print(
            f"{name:14s} predicted {predicted * 1e3:7.2f} ms  measured {measured * 1e3:7.2f} ms  "
            f"error {rows[-1]['abs_error']:6.1%}  capture {capture_s:5.2f} s"
        )
    median_error = statistics.median(r["abs_error"] for r in rows)
    r50 = next(r for r in rows if r["model"] == "resnet50")
    save(
        "cost_model",
        {
            "models": rows,
            "median_abs_error": median_error,
            "target_median_abs_error": 0.15,
            "resnet50_capture_s": r50["capture_s"],
            "target_resnet50_capture_s": 10.0,
            "met": median_error <= 0.15 and r50["capture_s"] < 10.0,
        },
    )


if __name__ == "__main__":
    main()
