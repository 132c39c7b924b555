"""The demo's PNG plots (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["write_plots"]

_LABELS = {"fixed_time": "fixed time (SUMO)", "actuated": "actuated (SUMO)", "ground_truth": "LQF, true queues",
           "camera": "LQF, split pipeline"}


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


def _fps(per_second: list[int], target: float, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.arange(len(per_second)), per_second, lw=1)
    ax.axhline(target, color="grey", ls="--", lw=1, label=f"16 cameras x 10 fps = {target:.0f}")
    ax.set(xlabel="wall-clock second", ylabel="frames delivered per second", title="Pipeline throughput")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bytes(links: list[dict], raw_bytes: float, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    names = ["raw frame upload"] + [f"{l['link']}\n({l['codec']})" for l in links]
    values = [raw_bytes] + [l["bytes_per_frame"] for l in links]
    ax.bar(names, values, color=["grey"] + ["tab:blue"] * len(links))
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:,.0f} B", ha="center", va="bottom")
    ax.set(ylabel="bytes per frame on the wire", title="Bytes per link vs raw-frame upload")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _waiting(traffic: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    names = [k for k in _LABELS if k in traffic]
    means = [np.mean([r["mean_waiting_s"] for r in traffic[k]]) for k in names]
    ax.bar([_LABELS[k] for k in names], means, color=["grey", "tab:orange", "tab:green", "tab:blue"][: len(names)])
    for i, k in enumerate(names):
        ax.scatter([i] * len(traffic[k]), [r["mean_waiting_s"] for r in traffic[k]], color="black", s=10, zorder=3)
        ax.text(i, means[i], f"{means[i]:.1f} s", ha="center", va="bottom")
    ax.set(ylabel="mean waiting time per vehicle (s)", title="Signal control: waiting time (dots: seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _montage(frames: np.ndarray, truth: np.ndarray, estimate: np.ndarray, names: list[str], t_s: float, path: Path) -> None:
    fig, axes = plt.subplots(2, 8, figsize=(12, 7))
    for i, ax in enumerate(axes.flat):
        ax.imshow(frames[i].transpose(1, 2, 0), interpolation="nearest")
        ax.set_title(f"{names[i]}\ntrue {truth[i, 1]:.0f}|{truth[i, 0]:.0f}\nest {estimate[i, 1]:.1f}|{estimate[i, 0]:.1f}",
                     fontsize=7)
        ax.axis("off")
    fig.suptitle(f"The 16 cameras at {t_s:.1f} s, the busiest step (stop line at the top); "
                 "halting vehicles per lane (left|right): true vs estimated")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(out: Path, report: dict, latencies_ms: list[float], per_second: list[int], montage: dict) -> list[str]:
    """Write the five PNGs into ``out``; returns their file names."""
    files = {"latency_cdf.png": lambda p: _latency_cdf(latencies_ms, p),
             "fps.png": lambda p: _fps(per_second, report["pipeline"]["target_fps"], p),
             "bytes_per_link.png": lambda p: _bytes(report["pipeline"]["links"], report["pipeline"]["raw_bytes_per_frame"], p),
             "waiting_time.png": lambda p: _waiting(report["traffic"]["runs"], p),
             "cameras.png": lambda p: _montage(montage["frames"], montage["truth"], montage["estimate"], montage["names"], montage["t_s"], p)}
    for name, draw in files.items():
        draw(out / name)
    return list(files)
