"""The demo's PNG plots (matplotlib, no display needed): any number of junctions and cameras."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .report import LABELS  # noqa: E402

__all__ = ["write_plots"]


def _latency_cdf(latencies_ms: list[float], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    x = np.sort(np.asarray(latencies_ms))
    ax.plot(x, np.arange(1, len(x) + 1) / max(len(x), 1))
    ax.axvline(100, color="grey", ls="--", lw=1, label="100 ms safety budget")
    ax.set(xlabel="end-to-end latency (ms), camera to edge", ylabel="fraction of frames", title="Latency CDF")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fps(per_second: list[int], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.arange(len(per_second)), per_second, lw=1)
    ax.set(xlabel="wall-clock second", ylabel="frames delivered per second", title="Pipeline throughput")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bytes(links: list[dict], raw_bytes: float, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    names = ["raw frame upload"] + [f"{link['link']}\n({link['codec']})" for link in links]
    values = [raw_bytes] + [link["bytes_per_frame"] for link in links]
    ax.bar(names, values, color=["grey"] + ["tab:blue"] * len(links))
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:,.0f} B", ha="center", va="bottom")
    ax.set(ylabel="bytes per frame on the wire", title="Bytes per link vs raw-frame upload")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _delay(traffic: dict, controller: str, title: str, path: Path) -> None:
    """Mean delay per controller: bars are the mean over seeds, whiskers the spread, dots the seeds."""
    runs = traffic["runs"]
    names = [k for k in LABELS if k in runs]
    means = [traffic["mean_delay_s"][k] for k in names]
    stds = [traffic["mean_delay_s_std"][k] for k in names]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colours = {
        "fixed_time": "grey",
        "actuated": "tab:orange",
        "max_pressure_truth": "tab:green",
        "greedy_truth": "tab:olive",
        "camera": "tab:blue",
    }
    labels = ["\n".join(textwrap.wrap(LABELS[k], 16)) + (f"\n({controller.replace('_', '-')})" if k == "camera" else "") for k in names]
    ax.bar(labels, means, yerr=stds, capsize=4, color=[colours[k] for k in names])
    for i, k in enumerate(names):
        ax.scatter([i + 0.12] * len(runs[k]), [r["mean_delay_s"] for r in runs[k]], color="black", s=10, zorder=3)
        ax.text(i, means[i] + stds[i] + 0.01 * max(means), f"{means[i]:.1f} ± {stds[i]:.1f} s", ha="center", va="bottom", fontsize=8)
    ax.set(ylabel="mean delay per vehicle (s, SUMO timeLoss)", title=title)
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _queues(trace: list[tuple[float, float, float, float]], junction: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(9, 4))
    if trace:
        t, est, vis, whole = (np.asarray(x) for x in zip(*sorted(trace)))
        ax.plot(t, whole, color="lightgrey", lw=1, label="true: whole lanes (SUMO)")
        ax.plot(t, vis, color="black", lw=1, label="true: what the cameras see (last 102 m)")
        ax.plot(t, est, color="tab:blue", lw=1, alpha=0.8, label="estimated by the split pipeline")
    ax.set(
        xlabel="simulated time (s)", ylabel="halting vehicles, all approaches", title=f"Queues at junction {junction}: estimated vs true"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _montage(montage: dict, names: list[str], junctions: list[str], path: Path) -> None:
    """One row per junction (its cameras side by side) when there are up to 8 junctions; else a grid."""
    frames, truth, est, lanes = montage["frames"], montage["truth"], montage["estimate"], montage["lanes"]
    n = len(frames)
    groups = list(dict.fromkeys(junctions))
    if len(groups) <= 8:
        cols = max(junctions.count(g) for g in groups)
        slots = [(groups.index(j), [i for i in range(n) if junctions[i] == j].index(c)) for c, j in enumerate(junctions)]
        rows = len(groups)
    else:
        cols = min(n, 12)
        rows = math.ceil(n / cols)
        slots = [divmod(i, cols) for i in range(n)]
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols + 1.0, 3.3 * rows + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (r, c) in enumerate(slots):
        ax = axes[r][c]
        ax.imshow(frames[i].transpose(1, 2, 0), interpolation="nearest")
        k = lanes[i]
        order = range(k - 1, -1, -1)  # left to right on screen: the leftmost lane first
        ax.set_title(
            f"{junctions[i]}: {names[i][:14]}\ntrue {'|'.join(f'{truth[i, j]:.0f}' for j in order)}\n"
            f"est {'|'.join(f'{est[i, j]:.1f}' for j in order)}",
            fontsize=6,
        )
    fig.suptitle(
        f"The {n} cameras at {montage['t_s']:.0f} s, the busiest frame set (stop line at the top); "
        "halting vehicles per lane, left to right: true vs estimated",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(out: Path, report: dict, runs, scenario) -> list[str]:
    """Write the PNGs into ``out``; returns their file names."""
    lat = [x for s in runs for x in s.latencies_ms]
    per_second = [x for s in runs for x in s.per_second]
    busiest = max(runs, key=lambda s: s.montage.get("queued", -1)).montage
    names = [a.edge for a in scenario.cameras]
    sc = report["scenario"]
    title = f"{sc['name']}: mean delay per controller over seeds {report['seeds']} ({sc['end_s'] - sc['begin_s']:.0f} simulated s each)"
    files = {
        "delay.png": lambda p: _delay(report["traffic"], report["camera_controller"], title, p),
        "queues.png": lambda p: _queues(runs[0].trace, scenario.junctions[0].id, p),
        "cameras.png": lambda p: _montage(busiest, names, [a.junction for a in scenario.cameras], p),
        "latency_cdf.png": lambda p: _latency_cdf(lat, p),
        "fps.png": lambda p: _fps(per_second, p),
        "bytes_per_link.png": lambda p: _bytes(report["pipeline"]["links"], report["pipeline"]["raw_bytes_per_frame"], p),
    }
    written = []
    for name, draw in files.items():
        if name == "cameras.png" and "frames" not in busiest:
            continue
        draw(out / name)
        written.append(name)
    return written
