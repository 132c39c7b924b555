"""Early exits, measured: the same frames streamed with and without exits on emulated tiers and links.

    python benchmarks/bench_exits.py            # both models
    python benchmarks/bench_exits.py --only queue

(a) QueueNet (regression, the smart-city demo's model) on 4 cameras -> 2 gateways -> edge: a predicted-error
    exit on its ``down`` block, which the camera runs; head trained on frames of SUMO's ``midtown`` (seed
    1000, actuated control), calibrated on held-out frames of that run, streamed frames from another run
    (seed 1). Needs the ``demo`` extra (libsumo).
(b) CamNet (classification, 8 classes; no data set here: it is first taught 8 random templates) on the
    same tiers: a max-softmax exit on the value the camera sends up; frames are templates blended with
    noise (half clear, half noisy), so some are easy. Agreement is with the full model's argmax.

Per model and run: bytes per frame on each link, frames/s, latency p50/p99, the exit rate per tier, and
agreement (share of delivered argmaxes equal to the full model's) or error (mean |delivered - full model|)
over every streamed frame, the full model run eagerly beside the pipeline (a shadow check of all frames).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import RESULTS, save  # noqa: E402
from partition import Topology, capture, partition  # noqa: E402
from partition.exit_calib import ExitBudget, calibrate  # noqa: E402
from partition.exit_choice import exit_candidates  # noqa: E402
from partition.exit_train import attach  # noqa: E402
from runtime.pipeline import Pipeline  # noqa: E402

STREAMED = 240  # frames per run (60 per camera)


def topology() -> Topology:
    """The demo's tiers and links, 4 cameras on 2 gateways, one frame per camera per 50 ms offered."""
    return Topology.from_dict(
        {
            "name": "bench_exits",
            "emulate": True,
            "tiers": [
                {"name": "device", "nodes": 4, "speed": 0.08, "memory": "512 MB"},
                {"name": "gateway", "nodes": 2, "speed": 0.8, "memory": "4 GB"},
                {"name": "edge", "nodes": 1, "speed": 6, "memory": "32 GB"},
            ],
            "links": [
                {"from": "device", "to": "gateway", "bandwidth": "20 Mbit/s", "latency": "5 ms"},
                {"from": "gateway", "to": "edge", "bandwidth": "100 Mbit/s", "latency": "2 ms"},
            ],
            "sources": [{"count": 4, "fps": 20, "policy": "block"}],
        }
    )


def stream(plan, model, topo, frames: torch.Tensor) -> dict:
    inputs = [(frames[i : i + 1],) for i in range(len(frames))]
    with Pipeline(plan, model, topo, max_batch=8) as pipe:
        start = time.perf_counter()
        outputs = pipe.run(inputs, timeout_s=300)
        wall = time.perf_counter() - start
        report = pipe.report()
    return {
        "outputs": torch.cat(outputs),
        "fps": round(len(inputs) / wall, 1),
        "latency_ms": {k: round(report["latency_ms"][k], 1) for k in ("p50", "p99")},
        "bytes_per_frame": {link["link"]: round(link["bytes_per_frame"], 1) for link in report["links"]},
        "exit_rate_by_tier": (report.get("exits") or {}).get("rate_by_tier"),
        "delivered": report["frames_delivered"],
        "duplicates": report["duplicates_dropped"],
    }


def compare(name: str, model, em, cal, budget: ExitBudget, frames: torch.Tensor, kind: str, **plan_kw) -> dict:
    """Plan without exits (throughput), then the exits on that cut for the least bytes; stream both."""
    topo = topology()
    graph = capture(model, (frames[:1],), timing="analytic")
    base = partition(graph, topo, "throughput", model_name=name, **plan_kw)
    with_exits = partition(
        graph, topo, "bytes", pins=dict(base.assignment), model_name=name, exits=exit_candidates(em, cal, budget), **plan_kw
    )
    with torch.inference_mode():
        full = model(frames)
    runs = {}
    for label, plan, runner in (("without exits", base, model), ("with exits", with_exits, em)):
        run = stream(plan, runner, topo, frames)
        got = run.pop("outputs")
        if kind == "agreement":
            run["agreement"] = round(float((got.argmax(-1) == full.argmax(-1)).float().mean()), 4)
        else:
            run["error"] = round(float((got - full).abs().mean()), 4)
        runs[label] = run
    e = with_exits.exits
    return {
        "model": name,
        "frames": len(frames),
        "plan": {"assignment_ops": [len(s.nodes) for s in base.stages], "codecs": list(with_exits.codecs)},
        "exits": {
            "live": [x.to_json() for x in e.live],
            "budget": {"kind": e.kind, "bound": e.bound, "calibrated": round(e.quality, 4), "calibration_frames": cal.frames},
            "predicted_rate_by_tier": dict(zip(with_exits.tiers, e.rate_by_tier)),
            "predicted_uplink_bytes": {"without": e.link_bytes_without[0], "with": with_exits.predicted.link_bytes[0]},
        },
        "raw_bytes_per_frame": frames[:1].numel() * frames.element_size(),
        "runs": runs,
    }


def queue_model() -> dict:
    from examples.smart_city import DEFAULT_SCENARIO
    from examples.smart_city.exits import CALIBRATION_SEED, EXIT_POINT, calibration_frames
    from examples.smart_city.model import load_model
    from examples.smart_city.scenario import Scenario
    from partition.extras import require

    require("demo", "benchmarks/bench_exits.py (queue model)")
    scenario = Scenario.load(DEFAULT_SCENARIO, end_s=600.0)
    train = torch.from_numpy(calibration_frames(scenario, every_s=5.0, seed=CALIBRATION_SEED))
    half = len(train) // 2
    streamed = torch.from_numpy(calibration_frames(scenario, every_s=5.0, seed=1))[:STREAMED]
    model, _ = load_model()
    em = attach(model, [EXIT_POINT], train[:half], rule="predicted_error", steps=600)
    cal = calibrate(em, train[half:])
    return compare("queuenet", model, em, cal, ExitBudget(max_error=0.05), streamed, "error", codec="auto")


def classifier() -> dict:
    from tests.models import CamNet

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    templates = torch.randn(8, 3, 32, 32, generator=gen)

    def frames(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        label = torch.randint(0, 8, (n,), generator=gen)
        clear = (torch.arange(n) % 2 == 0).float().view(-1, 1, 1, 1)  # half the frames clear, half noisy
        noise = torch.randn(n, 3, 32, 32, generator=gen)
        return templates[label] * (0.2 + 0.8 * clear) + noise * (2.0 - clear), label

    model = CamNet()  # taught the 8 templates first (a few seconds), so that it is a classifier with easy and hard frames
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        x, y = frames(64)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    (train, _), (held, _), (streamed, _) = frames(1024), frames(512), frames(STREAMED)
    # the exit reads what the camera sends up in the plan without exits
    base = partition(capture(model, (streamed[:1],), timing="analytic"), topology(), "throughput")
    point = base.stages[0].outputs[0]
    em = attach(model, [point], train, rule="max_softmax", steps=400)
    cal = calibrate(em, held)
    return compare("camnet", model, em, cal, ExitBudget(min_agreement=0.95), streamed, "agreement")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["queue", "classifier"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    out = {}
    earlier = RESULTS / "exits.json"
    if args.only and earlier.exists():  # keep the other model's figures from the last run
        out = {k: v for k, v in json.loads(earlier.read_text()).items() if k in ("queue", "classifier")}
    if args.only in (None, "queue"):
        out["queue"] = queue_model()
    if args.only in (None, "classifier"):
        out["classifier"] = classifier()
    save("exits", out)
    return out


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
