"""The pipeline's report: what every stage and link measured, beside what the plan predicted."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from .emulation_limits import emulation_limits, limits_sentence
from .errors import unavailable
from .packing import ask_all

__all__ = ["stage_brief", "build_report", "report_tables", "save_report", "summary_line", "measured_bottleneck", "run_facts"]


def _gather(handles: dict, tries: int = 20) -> list[dict]:
    """metrics_json of every actor, asked all at once; an actor that is restarting is asked again
    on its own until it answers (with the fresh counters of its new incarnation)."""
    import ray

    errors = (*unavailable(), ray.exceptions.GetTimeoutError)
    try:
        return list(ask_all(handles, "metrics_json", timeout_s=10).values())
    except errors:
        pass
    out = []
    for handle in handles.values():
        for attempt in range(tries):
            try:
                out.append(ray.get(handle.metrics_json.remote(), timeout=10))
                break
            except errors:
                if attempt == tries - 1:
                    raise
                time.sleep(0.25)
    return out


def stage_brief(stages: dict) -> dict:
    """Frames in, out and unacknowledged per stage actor (``stages``: node -> handle), for error messages."""
    metrics = ask_all(stages, "metrics_json").values()
    return {m["node"]: {"in": m["frames_in"], "out": m["frames_out"], "unacked": m.get("unacked", 0)} for m in metrics}


def build_report(view) -> dict:
    """The report of a running pipeline, from its :class:`runtime.driver.DriverView`."""
    stages = _gather(view.stages)
    plan = view.plan
    tiers = []
    for t, name in enumerate(plan.tiers):
        mine = [m for m in stages if view.tier_of[m["node"]] == t]
        frames = sum(m["frames_in"] for m in mine)
        batches = sum(m["batch"]["count"] for m in mine)
        tiers.append(
            {
                "tier": name,
                "instances": len(mine),
                "frames": frames,
                "compute_ms_mean": _mean(mine, "compute_s") * 1e3,
                "compute_ms_p95": _max(mine, "compute_s", "p95") * 1e3,
                "emulated_wait_ms_mean": _mean(mine, "emulated_wait_s") * 1e3,
                "queue_ms_mean": _mean(mine, "queue_s") * 1e3,
                "queue_ms_p95": _max(mine, "queue_s", "p95") * 1e3,
                # frames computed per batch (frames only passing through, exited or errors, are not batched)
                "batch_mean": _computed(mine) / batches if batches else 0.0,
                "mixed_batches": sum(m.get("mixed_batches", 0) for m in mine),
                "batchable": all(m.get("batchable") for m in mine),
                "rejected": sum(m["rejected"] for m in mine),
                "last_reject": next((m["last_reject"] for m in mine if m["last_reject"]), ""),
                "replayed": sum(m["replayed"] for m in mine),
                "restarts_seen": sum(m["restarts_seen"] for m in mine),
                "predicted_compute_ms": plan.predicted.stage_compute_s[t] * 1e3,
                "exited": sum(m.get("exited", 0) for m in mine),
            }
        )
    links = []
    for j in range(len(plan.tiers) - 1):
        mine = [m for m in stages if view.tier_of[m["node"]] == j]
        receivers = [m for m in stages if view.tier_of[m["node"]] == j + 1]
        sent = sum(m["link_bytes"]["count"] for m in mine)
        total = sum(m["link_bytes_total"] for m in mine)
        links.append(
            {
                "link": f"{plan.tiers[j]}->{plan.tiers[j + 1]}",
                "codec": plan.codecs[j],
                "frames": sent,
                "senders": len(mine),
                "bytes_total": total,
                "bytes_per_frame": total / sent if sent else 0.0,
                "transfer_ms_mean": _mean(receivers, "inbound_s") * 1e3,
                "transfer_ms_p95": _max(receivers, "inbound_s", "p95") * 1e3,
                "push_ms_mean": _mean(mine, "link_s") * 1e3,
                "predicted_bytes_per_frame": plan.predicted.link_bytes[j],
                "predicted_ms": plan.predicted.link_s[j] * 1e3,
            }
        )
    wall = view.wall_s or 1e-9
    sinks = [m for m in stages if "e2e_latency_s" in m]
    e2e = sinks[0]["e2e_latency_s"] if len(sinks) == 1 else _merge(sinks)
    offered = view.admitted + view.dropped
    return {
        "model": plan.model,
        "topology": view.topology.name,
        "emulated": view.emulate,
        "frames_delivered": view.delivered,
        "wall_s": view.wall_s,
        "fps": view.delivered / wall,
        "latency_ms": {k: v * 1e3 for k, v in e2e.items() if k.startswith("p") or k == "mean"},
        "latency_recent_ms": {k: v * 1e3 for k, v in (sinks[0].get("e2e_recent_s", {}) if len(sinks) == 1 else {}).items()},
        "drops": view.dropped,
        "sent_by_sources": view.admitted,
        "drop_share": view.dropped / offered if offered else 0.0,
        "measured_bottleneck": measured_bottleneck(tiers, links, wall),
        "run": run_facts(plan),
        "duplicates_dropped": sum(m.get("duplicates_dropped", 0) for m in sinks),
        "tiers": tiers,
        "links": links,
        "nodes": [_node_times(m, plan.tiers[view.tier_of[m["node"]]]) for m in stages],
        "emulation_limits": emulation_limits(stages, view.tier_of, plan.tiers, plan.tier_scale) if view.emulate else [],
        "predicted": {
            "latency_ms": plan.predicted.latency_s * 1e3,
            "fps": plan.predicted.throughput_fps,
            "bottleneck": plan.predicted.bottleneck,
        },
        "exits": exit_report(plan, tiers, links),
        "plan_version": view.version,
        "plan_routes": {str(source): version for source, version in sorted(view.routes.items())},  # cameras on another plan
        "plan_label": view.plan_label,
        "plan_switches": view.adapter.report(view.timeline) if view.adapter is not None else [],
        "replans": list(view.adapter.replans) if view.adapter is not None else [],
        "adapt_driver_s": view.adapter.step_s if view.adapter is not None else 0.0,
        "timeline": list(view.timeline.rows) if view.timeline is not None else [],
    }


def _computed(metrics: list[dict]) -> float:
    """Frames the stage actors ran through their stage (frames passing through exited or failed are not batched)."""
    return sum(m["batch"]["count"] * m["batch"]["mean"] for m in metrics if m["batch"]["count"])


def _node_times(m: dict, tier: str) -> dict:
    """One stage actor's real compute: frames computed and seconds spent on them (batches summed)."""
    frames = _computed([m])
    busy = m["compute_s"]["count"] * m["compute_s"]["mean"] if m["compute_s"]["count"] else 0.0
    first = {}
    if m["compute_s"]["count"] > 1:  # the first batch apart: it pays once for what later ones reuse (stagetimes.py)
        first = {"first_batch_s": m["compute_s"].get("first"), "first_batch_frames": m["batch"].get("first")}
        first["frame_s_p50"] = m.get("frame_s_p50")  # the median frame's time after the first batch (stagetimes.py)
    return {"node": m["node"], "tier": tier, "frames": round(frames), "compute_s_total": busy, "cgroup": m.get("cgroup"), **first}


def measured_bottleneck(tiers: list[dict], links: list[dict], wall_s: float) -> dict:
    """The busiest tier or link over the run: the share of the wall time its instances spent working
    (compute and emulated compute per frame, or transfer per frame, times frames, per instance).

    >>> measured_bottleneck([{"tier": "edge", "instances": 1, "frames": 10, "compute_ms_mean": 90.0,
    ...                       "emulated_wait_ms_mean": 0.0}], [], 1.0)
    {'where': 'tier edge compute', 'busy': 0.9}
    """
    best = {"where": "", "busy": 0.0}
    for t in tiers:
        busy = t["frames"] * (t["compute_ms_mean"] + t["emulated_wait_ms_mean"]) / 1e3 / max(t["instances"], 1) / wall_s
        if busy > best["busy"]:
            best = {"where": f"tier {t['tier']} compute", "busy": round(busy, 3)}
    for link in links:
        senders = max(link.get("senders", 1), 1)
        busy = link["frames"] * link["transfer_ms_mean"] / 1e3 / senders / wall_s
        if busy > best["busy"]:
            best = {"where": f"link {link['link']}", "busy": round(busy, 3)}
    return best


def run_facts(plan) -> dict:
    """What a report needs to be read later: input shapes, objective, codecs, ops per tier, versions."""
    import platform

    from partition.extras import package_versions

    ops: dict[str, list[str]] = {tier: [] for tier in plan.tiers}
    for op, tier in plan.assignment.items():
        ops.setdefault(tier, []).append(op)
    return {
        "inputs": [{"shape": list(s.shape) if s.shape is not None else None, "dtype": s.dtype} for s in plan.inputs],
        "objective": plan.objective,
        "codecs": list(plan.codecs),
        "assignment": ops,
        "versions": {**package_versions(), "python": platform.python_version()},
    }


def _mean(ms: list[dict], key: str) -> float:
    count = sum(m[key]["count"] for m in ms)
    return sum(m[key]["mean"] * m[key]["count"] for m in ms if m[key]["count"]) / count if count else 0.0


def _max(ms: list[dict], key: str, q: str) -> float:
    vals = [m[key][q] for m in ms if m[key]["count"] and not math.isnan(m[key][q])]
    return max(vals) if vals else 0.0


def _merge(sinks: list[dict]) -> dict:
    if not sinks:
        return {}
    keys = ("mean", "p50", "p95", "p99")
    return {k: max(s["e2e_latency_s"][k] for s in sinks) for k in keys}


def report_tables(report: dict):
    from rich.table import Table

    head = (
        f"{report['model']} on {report['topology']}{' (emulated)' if report['emulated'] else ''}, "
        f"plan {report.get('plan_label', 'v0')}: "
        f"{report['frames_delivered']} frames, {report['fps']:.1f} fps, latency p50 "
        f"{report['latency_ms'].get('p50', float('nan')):.1f} / p95 {report['latency_ms'].get('p95', float('nan')):.1f} / "
        f"p99 {report['latency_ms'].get('p99', float('nan')):.1f} ms, {_drops(report)}"
    )
    limits = {r["tier"]: r["factor"] for r in report.get("emulation_limits") or []}
    caption = f"emulation could not hold: {', '.join(f'{t} {f:g}x slower here' for t, f in limits.items())}" if limits else None
    tiers = Table(title=head, caption=caption, caption_style="yellow")
    for col in ("tier", "inst", "frames", "compute ms", "(predicted)", "queue ms", "batch", "rejected", "replayed"):
        tiers.add_column(col, justify="right" if col != "tier" else "left")
    for t in report["tiers"]:
        tiers.add_row(
            t["tier"],
            str(t["instances"]),
            str(t["frames"]),
            f"{t['compute_ms_mean'] + t['emulated_wait_ms_mean']:.2f}",
            f"{t['predicted_compute_ms']:.2f}",
            f"{t['queue_ms_mean']:.2f}",
            f"{t['batch_mean']:.2f}",
            str(t["rejected"]),
            str(t["replayed"]),
        )
    links = Table(title="links")
    for col in ("link", "codec", "frames", "bytes/frame", "(predicted)", "ms/frame", "(predicted)"):
        links.add_column(col, justify="right" if col not in ("link", "codec") else "left")
    for link in report["links"]:
        links.add_row(
            link["link"],
            link["codec"],
            str(link["frames"]),
            f"{link['bytes_per_frame']:,.0f}",
            f"{link['predicted_bytes_per_frame']:,}",
            f"{link['transfer_ms_mean']:.2f}",
            f"{link['predicted_ms']:.2f}",
        )
    return [tiers, links]


def _drops(report: dict) -> str:
    offered = report["drops"] + report["sent_by_sources"]
    if not report["drops"]:
        return "nothing dropped"
    return f"{report['drops']} of {offered} frames dropped ({report['drops'] / offered:.0%})"


def summary_line(report: dict) -> str:
    """Offered against delivered, predicted capacity against the measured bottleneck: one line."""
    p, offered = report["predicted"], report.get("offered") or {}
    parts = []
    if offered:
        share = report["fps"] / offered["fps"] if offered["fps"] else float("nan")
        parts.append(
            f"offered {offered['fps']:.1f} frames/s ({offered['streams']} streams x "
            f"{offered['fps_per_stream']:g} fps), delivered {report['fps']:.1f} ({share:.0%})"
        )
    else:
        parts.append(f"delivered {report['fps']:.1f} frames/s")
    parts.append(f"{_drops(report)}")
    parts.append(f"latency p50 {report['latency_ms'].get('p50', float('nan')):.1f} ms (predicted {p['latency_ms']:.1f} ms)")
    busy = report.get("measured_bottleneck") or {}
    parts.append(
        f"predicted capacity {p['fps']:.1f} frames/s, bottleneck {p['bottleneck']}"
        + (f"; measured bottleneck {busy['where']} (busy {busy['busy']:.0%})" if busy.get("where") else "")
    )
    line = "; ".join(parts) + (" [emulated]" if report["emulated"] else "")
    limits = limits_sentence(report.get("emulation_limits") or [])
    return line + (f"\nwarning: {limits}" if limits else "")


def save_report(report: dict, path: str | Path) -> None:
    """Write the report as JSON, making its folder if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str))


def exit_report(plan, tiers: list[dict], links: list[dict]) -> dict | None:
    """Early exits as measured: the share of frames answered on each tier (the sink's: by the full model), and
    bytes per frame on each link against the same cut without exits (predicted). None without live exits."""
    if plan.exits is None or not plan.exits.live:
        return None
    total = tiers[0]["frames"] if tiers else 0
    exited = [t["exited"] for t in tiers]
    rate = {t["tier"]: (n / total if total else 0.0) for t, n in zip(tiers, exited)}
    if tiers:
        rate[tiers[-1]["tier"]] = (total - sum(exited)) / total if total else 0.0
    without = plan.exits.link_bytes_without
    return {
        "live": [e.to_json() for e in plan.exits.live],
        "rate_by_tier": rate,
        "predicted_rate_by_tier": dict(zip(plan.tiers, plan.exits.rate_by_tier)),
        "budget": {"kind": plan.exits.kind, "bound": plan.exits.bound, "calibrated": plan.exits.quality},
        "bytes_per_frame_without": {link["link"]: w for link, w in zip(links, without)},
        "bytes_saved_per_frame": {link["link"]: w - link["bytes_per_frame"] for link, w in zip(links, without)},
    }
