"""A stream's per-second timeline as a PNG: frames/s and p99 latency over time, plan switches marked."""

from __future__ import annotations

from pathlib import Path

__all__ = ["plot_timeline"]


def plot_timeline(report: dict, path: str | Path, title: str | None = None) -> Path:
    """Write ``report["timeline"]`` (and ``report["plan_switches"]``) as a PNG at ``path``.

    Raises:
        MissingDependency: matplotlib is not installed (it comes with the ``demo`` extra).
    """
    from partition.extras import require

    require("demo", "the timeline plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report.get("timeline", [])
    t = [r["t_s"] for r in rows]
    fig, (ax_fps, ax_p99) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    ax_fps.plot(t, [r["fps"] for r in rows], lw=1.2)
    ax_fps.set(ylabel="frames/s delivered", title=title or f"{report.get('model', '')} on {report.get('topology', '')}")
    ax_p99.plot(t, [r["p99_ms"] if r["p99_ms"] is not None else float("nan") for r in rows], lw=1.2, color="tab:red")
    ax_p99.set(ylabel="p99 latency (ms)", xlabel="stream time (s)")
    for s in report.get("plan_switches", []):
        for ax in (ax_fps, ax_p99):
            ax.axvline(s["at_s"], color="grey", ls="--", lw=1)
            if s.get("switch_s") is not None:
                ax.axvspan(s["at_s"], s["at_s"] + s["switch_s"], color="grey", alpha=0.15)
        if s.get("version") is not None:
            ax_fps.annotate(
                f"plan v{s['version']}",
                (s["at_s"], ax_fps.get_ylim()[1]),
                fontsize=8,
                va="top",
                ha="left",
                xytext=(3, -3),
                textcoords="offset points",
            )
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
