"""Plans measured on a real lab, not predicted: `python benchmarks/bench_lab.py` (Linux, root, sshd).

For each lab (three_tier, and smart_city cut to what this machine holds: 2 cameras, 1 gateway, 1 edge):
`lab up`, `cluster up` (Ray over ssh into every namespace), then for each model (a CNN, a transformer from
`transformers`, QueueNet):

1. **Profiles**: every op timed on a node of every tier, inside its CPU cgroup, at the rate the runs stream, then
   the whole model and a one-op stage run on each tier in a real pipeline to calibrate them (`tierpipe profile
   --address`: a line through the two points per tier). A stage that is the whole model on a tier is thus
   predicted from an earlier run of the same stage: the summary gives the share within 10% of the split stages
   (`split_profiled_within_10pct`) apart. A stage's measured time is its median frame's
   (`profiled_within_10pct`); `profiled_within_10pct_of_mean` gives the share against the mean.
2. **Runs with emulation off** of tierpipe's plan (made from the profiles) and of the four baselines (all on
   device, all on edge, Neurosurgeon, DADS), each for real on the lab: per stage, the analytic and the
   profiled prediction against the measured time; end-to-end latency and fps predicted vs measured; the
   measured ranking of the five plans against the predicted one.
3. **Live adaptation** (three_tier, CNN): `lab shape --upstream-only` drops the device's uplink mid-stream
   from 50 to 1.5 Mbit/s (a real tc change, no conditions file); when the adapter sees it, when it switches,
   frames lost.

Each lab runs in a child process (a driver joins its lab's head namespace). Prints and saves
`benchmarks/results/bench_lab.json`. `--quick`: three_tier and the CNN only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import save  # noqa: E402
from runtime.stagetimes import error  # noqa: E402

MODELS = {  # name -> (model spec, input shape or None for the model's own)
    "cnn (resnet18, 112x112)": ("resnet18", [1, 3, 112, 112]),
    "transformer (HF ViT, small config)": ("examples.hf_models:vit", None),
    "queuenet": ("examples.smart_city.model:load_model", None),
}
LABS = {"three_tier": 6396, "smart_city_small": 6397}
FPS = 2.0  # per stream, or 60% of what a plan is predicted to carry if less: latency is a frame's, not a queue's
MIN_FRAMES = 16  # a run streams at least this many frames
PREFIX, NETWORK = "tb-", "198.19.48.0/20"


def _tierpipe(*argv: str, timeout_s: float = 600) -> str:
    done = subprocess.run([sys.executable, "-m", "runtime.cli", *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise SystemExit(f"tierpipe {' '.join(argv)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def _topology(name: str):
    from partition import Topology

    if name == "three_tier":
        return Topology.load("three_tier")
    city = Topology.load("smart_city")  # the tiers, speeds and links of smart_city; as many nodes as 2 cores hold
    tiers = [t.model_copy(update={"nodes": n}) for t, n in zip(city.tiers, (2, 1, 1))]
    sources = [s.model_copy(update={"count": 2, "shape": None}) for s in city.sources]
    return city.model_copy(update={"name": "smart_city_small", "tiers": tiers, "sources": sources, "hosts": {}, "fan_in": {}})


# ------------------------------------------------------------------ one lab, in a child process
def run_lab(name: str, seconds: float, models: list[str], out: Path, adapt_only: bool = False) -> None:
    from partition import Topology, capture, partition
    from partition.baseline_plans import baseline_plans
    from partition.cost import CostModel
    from partition.zoo import get_model
    from runtime import Pipeline
    from runtime.connect import connect_driver
    from runtime.profiling import profile_tiers
    from runtime.stagetimes import link_times, stage_times

    folder = Path(tempfile.mkdtemp(prefix=f"bench-lab-{name}-"))
    topo_file, lab_yaml = folder / "topology.yaml", folder / "lab.yaml"
    topo_file.write_text(_yaml(_topology(name)))
    started = time.perf_counter()
    _tierpipe("lab", "up", str(topo_file), "--prefix", PREFIX, "--network", NETWORK, "--dir", str(folder / "lab"), "--out", str(lab_yaml))
    result: dict = {"lab": name, "models": {}}
    try:
        _tierpipe("cluster", "up", str(lab_yaml), "--port", str(LABS[name]))
        result["lab_up_s"] = time.perf_counter() - started
        topo = Topology.load(lab_yaml)
        result["cpu_scale"] = topo.lab.cpu_scale
        address = f"{topo.hosts[topo.path[-1].node_names()[0]].address}:{LABS[name]}"
        connect_driver(address, topo, log_to_driver=False)
        lab_topo = topo
        for label in models:
            spec, shape = MODELS[label]
            model, inputs = get_model(spec, shape)
            dtype = str(inputs[0].dtype).removeprefix("torch.")  # the sources stream what the model takes (QueueNet: uint8)
            topo = lab_topo.model_copy(update={"sources": [s.model_copy(update={"dtype": dtype}) for s in lab_topo.sources]})
            graph = capture(model, inputs, timing="analytic")
            profiles = profile_tiers(model, inputs, topo, address, seconds=3.0, fps=FPS, calibrate=True)["profiles"]
            analytic, profiled = CostModel(graph, topo), CostModel(graph, topo, profiles)
            plans = {"tierpipe": partition(graph, topo, "latency", profiles=profiles, model_name=spec)}
            if not adapt_only:
                plans.update(baseline_plans(graph, topo, "latency", profiles=profiles, model_name=spec))
            if label == models[0]:
                adapt_profiles = profiles
            runs = {}
            for plan_name, plan in plans.items():
                fps = min(FPS, 0.6 * plan.predicted.stream_fps)  # per stream, below what the plan carries: no queue
                with Pipeline(plan, model, topo, address=address, emulate=False) as pipe:
                    report = pipe.stream(max(seconds, MIN_FRAMES / fps), fps=fps)
                runs[plan_name] = {
                    "predicted_latency_ms": plan.predicted.latency_s * 1e3,
                    "predicted_fps": plan.predicted.throughput_fps,
                    "measured_latency_ms_p50": report["latency_ms"].get("p50"),
                    "measured_fps": report["fps"],
                    "offered_fps": report["sent_by_sources"] / max(report["wall_s"], 1e-9),
                    "frames_delivered": report["frames_delivered"],
                    "frames_lost": report["sent_by_sources"] - report["frames_delivered"],
                    "stage_times": stage_times(report, plan, analytic, profiled),
                    "link_times": link_times(report, profiled),
                }
                brief = {k: v for k, v in runs[plan_name].items() if k not in ("stage_times", "link_times")}
                print(f"{name} / {label} / {plan_name}: {json.dumps(brief)}")
            result["models"][label] = runs
            result.setdefault("model_ops", {})[label] = sum(1 for n in graph.nodes if n.name not in graph.inputs)
        if name == "three_tier" and models:
            result["adaptation"] = _adapt(lab_topo, address, folder / "lab", models[0], seconds, adapt_profiles)
    finally:
        import ray

        from runtime.lab.driver import leave_head_namespace

        ray.shutdown()
        leave_head_namespace()  # `lab down` stops every process in the lab's namespaces
        _tierpipe("cluster", "down", str(lab_yaml))
        _tierpipe("lab", "down", "--dir", str(folder / "lab"), "--purge-keys")
    out.write_text(json.dumps(result))


def _yaml(topo) -> str:
    import yaml

    return yaml.safe_dump(topo.model_dump(by_alias=True, exclude={"source_file"}, exclude_none=True), sort_keys=False)


def _adapt(topo, address: str, lab_dir: Path, label: str, seconds: float, profiles: dict) -> dict:
    """A real drop of the device's uplink (tc) mid-stream, with the adapter on (re-planning with the profiles:
    the tiers and links as measured): when it is seen, when the switch lands, frames lost."""
    from partition import capture, partition
    from partition.zoo import get_model
    from runtime import Pipeline
    from runtime.adapt import Adapter
    from runtime.lab.shape import set_uplink_rate
    from runtime.lab.state import LabState

    spec, shape = MODELS[label]
    model, inputs = get_model(spec, shape)
    graph = capture(model, inputs, timing="analytic")
    plan = partition(graph, topo, "latency", profiles=profiles, model_name=spec)
    state = LabState.load(lab_dir / "state.json")
    # the device's uplink, which the frames cross raw: upstream from 50 Mbit/s to 1.5, where a raw frame takes
    # longer to send than the stream allows. Upstream only: on the lab the driver feeds the camera's frames to the
    # device over the same link (a camera makes its own), and the new plan's stages reach the device over it
    before, after = topo.links[0].bandwidth_mbps, 1.5
    change_at = max(seconds, 10.0)
    changed: dict = {}

    def drop() -> None:
        time.sleep(change_at)
        set_uplink_rate(state, "device-0", after, upstream_only=True)  # the frames still reach the device
        changed["at"] = time.perf_counter()

    adapter = Adapter(graph, "latency", codec="auto", profiles=profiles)
    with Pipeline(plan, model, topo, address=address, emulate=False, adapt=adapter, graph=graph) as pipe:
        t0 = time.perf_counter()
        threading.Thread(target=drop, daemon=True).start()
        report = pipe.stream(change_at + 20.0, fps=FPS)
    set_uplink_rate(state, "device-0", before)
    switches = [s for s in report["plan_switches"] if not s["error"] and s["version"] is not None]
    change_s = changed["at"] - t0 if changed else None
    first = next((s for s in switches if change_s is not None and s["at_s"] >= change_s), None)
    return {
        "link": "device->gateway",
        "uplink_mbps": [before, after],
        "changed_at_s": change_s,
        "switches": report["plan_switches"],
        "detected_after_change_s": (first["at_s"] - change_s) if first else None,
        "switched_after_change_s": (first["at_s"] + first["switch_s"] - change_s) if first and first["switch_s"] is not None else None,
        "switches_before_change": sum(1 for s in switches if change_s is not None and s["at_s"] < change_s),
        "frames_lost": report["sent_by_sources"] - report["frames_delivered"],
        "drops": report["drops"],
        "frames_delivered": report["frames_delivered"],
        "replans": report["replans"],
        "link_profile": profiles.get("_links", {}).get("device->gateway"),
    }


# ------------------------------------------------------------------ the summary
def _share_within(errors: list[float], tol: float = 0.10) -> float | None:
    return sum(abs(e) <= tol for e in errors) / len(errors) if errors else None


def _pairs(runs: dict) -> dict:
    """Pairs of plans the prediction tells apart (latency > 10% apart): in how many the measurement agrees.
    Plans predicted alike (often the same cut under two names) are left out: their order is noise."""
    names = sorted(runs)
    told, agree, disagree = 0, 0, []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            pa, pb = runs[a]["predicted_latency_ms"], runs[b]["predicted_latency_ms"]
            ma, mb = runs[a]["measured_latency_ms_p50"], runs[b]["measured_latency_ms_p50"]
            if ma is None or mb is None or abs(pa - pb) <= 0.1 * min(pa, pb):
                continue
            told += 1
            if (pa < pb) == (ma < mb):
                agree += 1
            else:
                disagree.append(f"{a} vs {b}: predicted {pa:.0f} / {pb:.0f} ms, measured {ma:.0f} / {mb:.0f} ms")
    return {"pairs_told_apart": told, "pairs_agreeing": agree, "disagreements": disagree}


def _mean_errors(rows: list[dict]) -> list[float]:
    """The profiled prediction's errors against the mean time per frame (``measured_s`` is the median frame's)."""
    return [e for r in rows if (e := error(r["profiled_s"], r.get("measured_mean_s"))) is not None]


def summarise(labs: list[dict]) -> dict:
    out = {}
    every: list[dict] = []
    for lab in labs:
        for label, runs in lab["models"].items():
            rows = [r for run in runs.values() for r in run["stage_times"] if r["ops"] and r["measured_s"]]
            every += rows
            analytic = [r["error"] for r in rows if r["error"] is not None]
            profiled = [r["profiled_error"] for r in rows if r["profiled_error"] is not None]
            whole = lab.get("model_ops", {}).get(label) or max((r["ops"] for r in rows), default=0)  # calibrated on a run of it
            split = [r["profiled_error"] for r in rows if r["profiled_error"] is not None and r["ops"] < whole]
            predicted = sorted(runs, key=lambda p: runs[p]["predicted_latency_ms"])
            measured = sorted(runs, key=lambda p: runs[p]["measured_latency_ms_p50"] or float("inf"))
            out[f"{lab['lab']} / {label}"] = {
                "stages": len(rows),
                "analytic_within_10pct": _share_within(analytic),
                "analytic_median_abs_error": statistics.median(abs(e) for e in analytic) if analytic else None,
                "profiled_within_10pct": _share_within(profiled),
                "profiled_median_abs_error": statistics.median(abs(e) for e in profiled) if profiled else None,
                "profiled_within_10pct_of_mean": _share_within(_mean_errors(rows)),
                "split_stages": len(split),
                "split_profiled_within_10pct": _share_within(split),
                "ranking_predicted": predicted,
                "ranking_measured": measured,
                **_pairs(runs),
            }
    profiled = [r["profiled_error"] for r in every if r["profiled_error"] is not None]
    out["all"] = {
        "stages": len(every),
        "profiled_within_10pct": _share_within(profiled),
        "profiled_within_10pct_of_mean": _share_within(_mean_errors(every)),
        "analytic_within_10pct": _share_within([r["error"] for r in every if r["error"] is not None]),
        "pairs_told_apart": sum(v.get("pairs_told_apart", 0) for v in out.values()),
        "pairs_agreeing": sum(v.get("pairs_agreeing", 0) for v in out.values()),
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="three_tier and the CNN only")
    ap.add_argument("--seconds", type=float, default=6.0, help="stream time per plan")
    ap.add_argument("--adapt-only", action="store_true", help="three_tier: profiles of the CNN and the live adaptation run only")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--models", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        run_lab(args.one, args.seconds, json.loads(args.models), Path(args.out), args.adapt_only)
        return
    labs = ["three_tier"] if args.quick or args.adapt_only else list(LABS)
    models = list(MODELS)[:1] if args.quick or args.adapt_only else list(MODELS)
    results = []
    for name in labs:
        out = Path(tempfile.mkstemp(suffix=".json")[1])
        argv = [sys.executable, __file__, "--one", name, "--models", json.dumps(models), "--out", str(out), "--seconds", str(args.seconds)]
        argv += ["--adapt-only"] if args.adapt_only else []
        subprocess.run(argv, cwd=ROOT, check=True)
        results.append(json.loads(out.read_text()))
    save("bench_lab", {"seconds_per_run": args.seconds, "summary": summarise(results), "labs": results})


if __name__ == "__main__":
    main()
