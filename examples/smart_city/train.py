"""Train QueueNet on frames rendered from SUMO runs on a mix of generated networks; held-out MAE per lane count.

    python -m examples.smart_city.train            # about 7 minutes on 2 cores (needs eclipse-sumo)

The networks are made here, at training time, with ``netgenerate`` (grids, spiders and random
networks of 1 to 5 lanes, several seeds, every junction signalised) and random demand from
SUMO's ``randomTrips.py``; the repository holds only this script and the weights. Half the
runs keep the networks' fixed-time programs and half use max-pressure on exact queues, so
queues of every length are seen. Labels are the halting vehicles (under 0.1 m/s) a camera can
see on each lane (:mod:`.camera`: the last 102 m), lanes the approach lacks masked out.

Training also sees the shipped ``grid2x2`` (other seeds than the demo's). The held-out set is
networks that are not in training: grids of other shapes and block lengths, another spider and
another random network, the shipped ``midtown`` (the demo's default) and the sumo-rl networks in
``tests/data/sumo_rl``; its MAE is reported per lane count and per network and written next to the
weights (``queuenet.json``), where the demo's report reads it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

from .camera import MAX_LANES
from .model import SAMPLE_FRAMES, WEIGHTS, QueueNet
from .network import VTYPES
from .scenario import Scenario
from .sim import SimOptions, TrafficSim
from .simproc import run_in_process


@dataclass(frozen=True)
class NetSpec:
    """A network to generate: netgenerate's arguments, and demand (seconds between departures)."""

    name: str
    args: tuple[str, ...]
    period_s: float
    seed: int


def _grid(lanes: int, seed: int, length: int, period: float, shape: tuple[int, int] = (3, 3)) -> NetSpec:
    x, y = shape
    return NetSpec(
        f"grid{x}x{y}-{lanes}l-{length}m",
        (
            "--grid",
            "--grid.x-number",
            str(x),
            "--grid.y-number",
            str(y),
            "--grid.length",
            str(length),
            "--grid.attach-length",
            "100",
            "--default.lanenumber",
            str(lanes),
        ),
        period,
        seed,
    )


def _spider(arms: int, lanes: int, seed: int, period: float) -> NetSpec:
    return NetSpec(
        f"spider{arms}a{lanes}l-s{seed}",
        (
            "--spider",
            "--spider.arm-number",
            str(arms),
            "--spider.circle-number",
            "3",
            "--spider.space-radius",
            "110",
            "--default.lanenumber",
            str(lanes),
        ),
        period,
        seed,
    )


def _random(seed: int, period: float) -> NetSpec:
    return NetSpec(
        f"random-s{seed}",
        (
            "--rand",
            "--rand.iterations",
            "60",
            "--rand.random-lanenumber",
            "true",
            "--default.lanenumber",
            "5",
            "--rand.min-distance",
            "80",
            "--rand.max-distance",
            "220",
        ),
        period,
        seed,
    )


TRAIN = (
    [_grid(n, 10 + n, 120 + 10 * n, 1.6 / n**0.5) for n in range(1, 6)]
    + [_grid(n, 20 + n, 150, 1.1 / n**0.5) for n in (2, 3, 4, 5)]
    + [_spider(4, 2, 31, 1.0), _spider(6, 1, 32, 1.4), _spider(5, 3, 33, 0.7)]
    + [_random(41, 0.9), _random(42, 0.7), _random(43, 1.2)]
    # saturated: queues that fill the whole view, lane after lane
    + [_grid(2, 51, 140, 0.35, (2, 2)), _grid(4, 52, 160, 0.3, (2, 2)), _spider(4, 2, 53, 0.4), _random(54, 0.35)]
)
# held out: other shapes and block lengths than any training grid, another spider, another random network;
# and (below) the shipped midtown and the sumo-rl networks in tests/data, none of them made by these generators
HELD_OUT = [
    _grid(1, 91, 90, 1.5, (4, 2)),
    _grid(3, 93, 210, 0.9, (2, 4)),
    _grid(5, 95, 75, 0.7, (4, 2)),
    _spider(5, 2, 94, 1.0),
    _random(99, 0.8),
]
TRAIN_SHIPPED = ("grid2x2",)  # the shipped grid is in training; midtown (the demo's default) is not
HELD_OUT_SHIPPED = ("midtown",)
EXTERNAL = Path(__file__).resolve().parents[2] / "tests" / "data" / "sumo_rl"


def generate(spec: NetSpec, work: Path, duration_s: float) -> Scenario:
    """Write the network and its random demand into ``work``; the scenario over ``[0, duration_s)``."""
    import sumo

    net, trips, routes = work / f"{spec.name}.net.xml", work / f"{spec.name}.trips.xml", work / f"{spec.name}.rou.xml"
    tools = Path(sumo.SUMO_HOME)
    subprocess.run(
        [
            str(tools / "bin" / "netgenerate"),
            *spec.args,
            "-j",
            "traffic_light",
            "--no-turnarounds",
            "true",
            "--seed",
            str(spec.seed),
            "-o",
            str(net),
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            sys.executable,
            str(tools / "tools" / "randomTrips.py"),
            "-n",
            str(net),
            "-o",
            str(trips),
            "-r",
            str(work / f"{spec.name}.checked.rou.xml"),
            "-e",
            f"{duration_s:g}",
            "-p",
            f"{spec.period_s:g}",
            "--fringe-factor",
            "5",
            "--min-distance",
            "150",
            "--seed",
            str(spec.seed),
            "--trip-attributes",
            'type="mix" departLane="best" departSpeed="max"',
        ],
        check=True,
        capture_output=True,
    )
    body = trips.read_text().split("<routes", 1)[1].split(">", 1)[1]
    routes.write_text("\n".join(["<routes>", *VTYPES]) + "\n" + body)
    return Scenario.load(net=net, routes=[routes], begin_s=0.0, end_s=duration_s)


def render_run(scenario: Scenario, seed: int, mode: str, every_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames ``[N, 3, H, W]`` uint8, labels ``[N, 5]`` and lane counts ``[N]`` from one run (in its own process)."""
    sim = TrafficSim(scenario, seed, mode, SimOptions())
    lanes = np.array(scenario.lanes_per_camera)
    rng = np.random.default_rng(seed)
    frames, labels, counts = [], [], []
    next_t = sim.t + every_s
    while not sim.done:
        sim.advance(next_t)
        next_t += every_s
        f, visible, _ = sim.observe()
        keep = (visible.sum(1) > 0) | (rng.random(len(f)) < 0.25)  # most empty frames are alike
        frames.append(f[keep])
        labels.append(visible[keep])
        counts.append(lanes[keep])
    sim.finish()
    return np.concatenate(frames), np.concatenate(labels), np.concatenate(counts)


def render_all(jobs: list[tuple[Scenario, int, str]], every_s: float, progress: Progress, what: str):
    task = progress.add_task(f"rendering SUMO runs ({what})", total=len(jobs))
    out = []
    for i in range(0, len(jobs), 2):  # two simulations at a time: one per core
        pending = [run_in_process(render_run, sc, seed, mode, every_s) for sc, seed, mode in jobs[i : i + 2]]
        for p in pending:
            out.append(p.get())
            progress.advance(task)
    return tuple(np.concatenate(parts) for parts in zip(*out))


def _mask(counts: np.ndarray) -> np.ndarray:
    return (np.arange(MAX_LANES)[None, :] < counts[:, None]).astype(np.float32)


def evaluate(model: QueueNet, frames: np.ndarray, labels: np.ndarray, counts: np.ndarray) -> dict:
    """MAE per present lane, overall and by the approach's lane count (1..5)."""
    model.eval()
    with torch.inference_mode():
        pred = torch.cat([model(torch.from_numpy(frames[i : i + 512])) for i in range(0, len(frames), 512)]).numpy()
    mask = _mask(counts).astype(bool)
    err = np.abs(pred - labels)
    by = {str(n): round(float(err[counts == n][:, :n].mean()), 4) for n in range(1, MAX_LANES + 1) if (counts == n).any()}
    busy = mask & (labels > 0)
    return {
        "mae_per_lane": round(float(err[mask].mean()), 4),
        "mae_per_lane_by_lane_count": by,
        "mae_busy_lanes": round(float(err[busy].mean()), 4) if busy.any() else 0.0,
        "frames": int(len(frames)),
        "frames_by_lane_count": {str(n): int((counts == n).sum()) for n in range(1, 6)},
        "mean_queue_per_lane": round(float(labels[mask].mean()), 3),
    }


def sample_frames(frames: np.ndarray, labels: np.ndarray, counts: np.ndarray, n: int = 16) -> np.ndarray:
    """The busiest frames, spread over lane counts: what the demo calibrates lossy codecs on."""
    picked: list[int] = []
    by_count = {k: np.argsort(-labels[counts == k].sum(1)) for k in np.unique(counts)}
    index = {k: np.flatnonzero(counts == k) for k in by_count}
    while len(picked) < min(n, len(frames)):
        for k, order in by_count.items():
            rank = sum(1 for i in picked if counts[i] == k)
            if rank < len(order) and len(picked) < n:
                picked.append(int(index[k][order[rank]]))
    return frames[np.array(picked)]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--duration", type=float, default=900.0, help="simulated seconds per training run (default 900)")
    parser.add_argument("--every", type=float, default=6.0, help="simulated seconds between frames (default 6)")
    parser.add_argument("--out", default=str(WEIGHTS))
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tierpipe-train-") as tmp, Progress() as progress:
        work = Path(tmp)
        gen = progress.add_task("generating networks (netgenerate, randomTrips)", total=len(TRAIN) + len(HELD_OUT))
        train_sc, held_sc = [], []
        for specs, into in ((TRAIN, train_sc), (HELD_OUT, held_sc)):
            for spec in specs:
                into.append((spec.name, generate(spec, work, args.duration)))
                progress.advance(gen)
        train_sc += [(name, Scenario.load(name, end_s=args.duration)) for name in TRAIN_SHIPPED]
        held_sc += [(name, Scenario.load(name, end_s=args.duration)) for name in HELD_OUT_SHIPPED]
        held_sc += [(cfg.parent.name, Scenario.load(cfg, end_s=args.duration)) for cfg in sorted(EXTERNAL.glob("*/*.sumocfg"))]
        jobs = [(sc, 100 + i, "fixed_time" if i % 2 == 0 else "max_pressure_truth") for i, (_, sc) in enumerate(train_sc)]
        x, y, n = render_all(jobs, args.every, progress, "training networks")
        held = {name: render_all([(sc, 900 + i, "fixed_time")], args.every, progress, name) for i, (name, sc) in enumerate(held_sc)}
        model = QueueNet()
        opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
        steps = args.epochs * (len(x) // 128)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
        task = progress.add_task(f"training on {len(x)} frames", total=steps)
        g = torch.Generator().manual_seed(0)
        mask_all = torch.from_numpy(_mask(n))
        for _ in range(args.epochs):
            model.train()
            order = torch.randperm(len(x), generator=g).numpy()
            for i in range(0, len(order) - 127, 128):
                idx = np.sort(order[i : i + 128])
                mask = mask_all[idx]
                loss = (
                    torch.nn.functional.huber_loss(model(torch.from_numpy(x[idx])), torch.from_numpy(y[idx]), reduction="none") * mask
                ).sum() / mask.sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                progress.update(task, advance=1, description=f"training on {len(x)} frames, loss {loss.item():.3f}")
    hx, hy, hn = (np.concatenate(parts) for parts in zip(*held.values()))
    result = {
        "held_out": evaluate(model, hx, hy, hn),
        "held_out_networks": {name: evaluate(model, *parts)["mae_per_lane"] for name, parts in held.items()},
        "train": {
            "networks": [s.name for s in TRAIN] + list(TRAIN_SHIPPED),
            "frames": int(len(x)),
            "frames_by_lane_count": {str(k): int((n == k).sum()) for k in range(1, 6)},
        },
        "unit": "halting vehicles per lane a camera sees (last 102 m)",
        "seconds": round(time.perf_counter() - start, 1),
    }
    torch.save(model.state_dict(), args.out)
    if "midtown" in held:
        np.save(SAMPLE_FRAMES, sample_frames(*held["midtown"]))
    Path(args.out).with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
