"""``report.json``'s ``stage_times`` and ``link_times``: per stage actor and per link, the time per frame
the analytic cost model predicted, the profiled one (``--profiles``) predicted, and the run measured.

The measured stage time is the stage's real compute per frame (each batch's time over its frames) after its
first batch (``first_batch_s``, reported apart: it pays once for what later batches reuse): ``measured_s`` the
median over the batches, ``measured_mean_s`` the mean. The median is the typical frame's time, which a run of a
few dozen frames measures again to a few percent; the mean moves by a tenth when one frame of thirty is
preempted by another process for a few times its length (on a lab, the other hosts share this machine's cores).
It is comparable with emulation off (``--emulate off``, e.g. on a lab); with emulation on the
stage is stretched to the prediction afterwards and this is the part that ran for real.
"""

from __future__ import annotations

__all__ = ["stage_times", "link_times", "error"]


def error(predicted: float | None, measured: float | None) -> float | None:
    """(predicted - measured) / measured; None where either is missing or nothing was measured.

    >>> error(0.11, 0.1), error(None, 0.1), error(0.1, 0.0)
    (0.1, None, None)
    """
    if predicted is None or not measured:
        return None
    return round((predicted - measured) / measured, 6)


def _steady(node: dict) -> tuple[float | None, float | None]:
    """(seconds per frame after the first batch, the first batch's seconds per frame) of a stage actor.

    The first batch of a stage pays once for what later ones reuse (torch's first call of each op, the
    allocator's first blocks, the event loop's first thread hop): the cost model predicts the frames after it.
    A stage that ran one batch only: that batch, and no first.

    >>> _steady({"frames": 4, "compute_s_total": 0.13, "first_batch_s": 0.1, "first_batch_frames": 1})
    (0.01, 0.1)
    >>> _steady({"frames": 1, "compute_s_total": 0.1}), _steady({"frames": 0, "compute_s_total": 0.0})
    ((0.1, None), (None, None))
    """
    frames, total = node["frames"], node["compute_s_total"]
    if not frames:
        return None, None
    first, first_frames = node.get("first_batch_s"), node.get("first_batch_frames")
    if first is None or first_frames is None or first != first or not 0 < first_frames < frames:
        return total / frames, None
    return round((total - first) / (frames - first_frames), 12), first / first_frames


def stage_times(report: dict, plan, analytic, profiled=None) -> list[dict]:
    """``[{tier, node, frames, predicted_s, profiled_s, measured_s, measured_mean_s, error, profiled_error}]``, seconds
    per frame (``measured_s``: the median frame's, see the module's text).

    ``analytic`` and ``profiled`` are ``CostModel``s of the plan's graph (``profiled`` None: no profiles given).
    """
    by_tier = {name: plan.stages[t].nodes for t, name in enumerate(plan.tiers)}
    index = {name: t for t, name in enumerate(plan.tiers)}
    rows = []
    for n in report.get("nodes", []):
        ops, t = by_tier[n["tier"]], index[n["tier"]]
        predicted = sum(analytic.compute_s(op, t) for op in ops)
        prof = profiled.stage_s(ops, t) if profiled is not None else None  # with the profiled call overhead
        mean, first = _steady(n)
        measured = n.get("frame_s_p50") or mean  # the median per frame where the actor kept its batches
        rows.append(
            {
                "tier": n["tier"],
                "node": n["node"],
                "ops": len(ops),
                "frames": n["frames"],
                "predicted_s": predicted,
                "profiled_s": prof,
                "measured_s": measured,
                "measured_mean_s": mean,
                "first_batch_s": first,
                # a stage without ops only forwards: its time is not the cost model's to predict
                "error": error(predicted, measured) if ops else None,
                "profiled_error": error(prof, measured) if ops else None,
            }
        )
    return rows


def link_times(report: dict, profiled=None) -> list[dict]:
    """``[{link, predicted_s, profiled_s, measured_s, error, profiled_error}]``: a frame's transfer on each link,
    predicted (bytes over the bandwidth, plus latency), from a profiled ``CostModel`` (the link's measured call
    time and time per byte, for the bytes the frames carried; None without one) and measured (from the
    sender's push to the receiver holding it)."""
    rows = []
    for j, link in enumerate(report["links"]):
        measured = link["transfer_ms_mean"] / 1e3 if link["frames"] else None
        predicted = link["predicted_ms"] / 1e3
        prof = profiled.link_latency_s(j) + profiled.link_s(j, link["bytes_per_frame"]) if profiled is not None else None
        rows.append(
            {
                "link": link["link"],
                "predicted_s": predicted,
                "profiled_s": prof,
                "measured_s": measured,
                "error": error(predicted, measured),
                "profiled_error": error(prof, measured),
            }
        )
    return rows
