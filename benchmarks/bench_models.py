"""Real models end to end: Hugging Face models (small configs, random weights) captured, partitioned onto
smart_city, split in-process and streamed by the Ray pipeline on ``local``; one row per model.

    python benchmarks/bench_models.py
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import save  # noqa: E402
from examples import hf_models  # noqa: E402
from partition import Topology, capture, partition, run_stages  # noqa: E402
from runtime import Pipeline  # noqa: E402


def equal(got, want) -> bool:
    try:
        if hasattr(want, "keys"):
            for key in got.keys():
                torch.testing.assert_close(got[key], want[key])
        else:
            torch.testing.assert_close(got, want)
        return type(got) is type(want)
    except AssertionError:
        return False


def row(name: str) -> dict:
    model, inputs = getattr(hf_models, name)()
    start = time.perf_counter()
    graph = capture(model, inputs)
    capture_s = time.perf_counter() - start
    smart = partition(graph, Topology.load("smart_city"), "throughput")
    with torch.inference_mode():
        ref = model(*inputs)
        split_ok = equal(run_stages(smart.build_stages(model), inputs), ref)
    topo = Topology.load("local")
    nodes = [n for n in graph.nodes if n.op != "input"]
    local = partition(graph, topo, "throughput", pins={nodes[len(nodes) // 3].name: "device", nodes[-1].name: "edge"})
    with Pipeline(local, model, topo, emulate=False, max_batch=4) as pipe:
        outs = pipe.run([inputs] * 4)
        report = pipe.report()
    with torch.inference_mode():
        pipe_ok = all(equal(o, ref) for o in outs)
    out = {
        "model": name,
        "capture": graph.method,
        "capture_s": round(capture_s, 2),
        "ops_per_tier_smart_city": {s.tier_name: len(s.nodes) for s in smart.stages},
        "ops_per_tier_local": {s.tier_name: len(s.nodes) for s in local.stages},
        "split_equals_eager": split_ok,
        "pipeline_equals_eager": pipe_ok,
        "batched_tiers_local": [t["tier"] for t in report["tiers"] if t["batchable"]],
        "params_mib": graph.total_param_bytes / 2**20,
        "notes": list(graph.notes),
    }
    print(
        f"{name:9s} {graph.method:6s} smart_city {out['ops_per_tier_smart_city']} local {out['ops_per_tier_local']} "
        f"split==eager {split_ok} pipeline==eager {pipe_ok} batched {out['batched_tiers_local']}",
        flush=True,
    )
    return out


def main() -> None:
    import ray

    warnings.filterwarnings("ignore")
    logging.getLogger("ray").setLevel(logging.ERROR)
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    try:
        rows = [row(name) for name in hf_models.__all__]
    finally:
        ray.shutdown()
    save("models", {"rows": rows, "met": all(r["split_equals_eager"] and r["pipeline_equals_eager"] for r in rows)})


if __name__ == "__main__":
    main()
