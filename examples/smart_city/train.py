"""Train QueueNet on frames rendered from SUMO runs; writes ``data/queuenet.pt`` and reports held-out MAE.

    python -m examples.smart_city.train            # about 5 minutes on 2 cores

Training runs use their own seeds (100+) and a mix of signal control (fixed time,
actuated, longest-queue-first) so that queues of every length are seen; the held-out
run (seed 999) is never trained on, and neither are the demo's seeds (1, 2, 3).
Labels are SUMO's ``lane.getLastStepHaltingNumber`` of the camera's two lanes.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from rich.progress import Progress

from .controller import AxisController
from .model import WEIGHTS, QueueNet
from .sim import JUNCTIONS, TrafficSim, control, run_in_process

TRAIN_RUNS = [(100, "static"), (101, "ground_truth"), (102, "actuated"), (103, "static"), (104, "ground_truth"),
              (105, "static")]
HELD_OUT = (999, "static")


def render_run(seed: int, controller: str, duration_s: float = 600.0, every_steps: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``[N, 3, H, W]`` uint8 and labels ``[N, 2]`` from one simulation (run it in its own process)."""
    sim = TrafficSim(seed, duration_s, "actuated" if controller == "actuated" else "static")
    controllers = {j: AxisController() for j in JUNCTIONS} if controller == "ground_truth" else None
    frames, labels, step = [], [], 0
    while not sim.done:
        if controllers:
            control(sim, controllers, sim.queues())
        sim.step()
        step += 1
        if step % every_steps == 0:
            frames.append(sim.frames())
            labels.append(sim.queues())
    sim.finish()
    return np.concatenate(frames), np.concatenate(labels)


def render_all(runs, progress: Progress) -> tuple[np.ndarray, np.ndarray]:
    task = progress.add_task("rendering SUMO runs", total=len(runs))
    frames, labels = [], []
    for i in range(0, len(runs), 2):                 # two simulations at a time: one per core
        pending = [run_in_process(render_run, seed, ctrl) for seed, ctrl in runs[i:i + 2]]
        for p in pending:
            f, l = p.get()
            frames.append(f)
            labels.append(l)
            progress.advance(task)
    return np.concatenate(frames), np.concatenate(labels)


def evaluate(model: QueueNet, frames: np.ndarray, labels: np.ndarray) -> dict:
    model.eval()
    with torch.inference_mode():
        pred = torch.cat([model(torch.from_numpy(frames[i:i + 512])) for i in range(0, len(frames), 512)]).numpy()
    err = np.abs(pred - labels)
    busy = labels.sum(axis=1) > 0
    return {"mae_per_lane": float(err.mean()), "mae_per_approach": float(np.abs(pred.sum(1) - labels.sum(1)).mean()),
            "mae_busy_lanes": float(err[busy].mean()) if busy.any() else 0.0, "frames": int(len(frames)),
            "mean_queue_per_lane": float(labels.mean())}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", default=str(WEIGHTS))
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    start = time.perf_counter()
    with Progress() as progress:
        x, y = render_all(TRAIN_RUNS + [HELD_OUT], progress)
        held = len(x) - len(x) // len(TRAIN_RUNS + [HELD_OUT])
        x_train, y_train, x_test, y_test = x[:held], y[:held], x[held:], y[held:]
        model = QueueNet()
        opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
        steps = args.epochs * (len(x_train) // 128)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
        task = progress.add_task(f"training on {len(x_train)} frames", total=steps)
        gen = torch.Generator().manual_seed(0)
        for _ in range(args.epochs):
            model.train()
            order = torch.randperm(len(x_train), generator=gen).numpy()
            for i in range(0, len(order) - 127, 128):
                idx = np.sort(order[i:i + 128])
                loss = torch.nn.functional.huber_loss(model(torch.from_numpy(x_train[idx])), torch.from_numpy(y_train[idx]))
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                progress.update(task, advance=1, description=f"training on {len(x_train)} frames, loss {loss.item():.3f}")
    result = evaluate(model, x_test, y_test)
    result["train_frames"], result["seconds"] = int(len(x_train)), round(time.perf_counter() - start, 1)
    torch.save(model.state_dict(), args.out)
    (WEIGHTS.with_suffix(".json")).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
