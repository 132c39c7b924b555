"""Emulation only stretches: what it could not honour, per stage actor, and one sentence saying so.

A stage is stretched to its tier's predicted time; when its real compute on this host is already
longer (a tier faster than the host, e.g. ``speed: 4``, or a host saturated by the other stages),
no wait can make it faster, and the run's figures are bound by this host rather than by the plan.
Each actor adds up, over its emulated batches, the tier's time and what the batch really took
(``StageMetrics.note_emulation``); a stage whose real time exceeds its tier's by more than
``TOLERANCE`` is named with the factor.
"""

from __future__ import annotations

__all__ = ["emulation_limits", "limits_sentence", "TOLERANCE"]

TOLERANCE = 0.10  # wake-ups and packing jitter stay within this on a quiet host


def emulation_limits(stages: list[dict], tier_of: dict[str, int], tiers: tuple[str, ...], tier_scale: tuple[float, ...] = ()) -> list[dict]:
    """``[{tier, node, budget_ms_per_batch..., factor, faster_than_host}]`` for the actors emulation could not hold.

    >>> m = {"node": "edge-0", "emulated_budget_s": 0.1, "emulated_real_s": 1.5, "over_budget": 9, "batch": {"count": 10, "mean": 1}}
    >>> [(r["tier"], r["factor"], r["faster_than_host"]) for r in emulation_limits([m], {"edge-0": 0}, ("edge",), (0.25,))]
    [('edge', 15.0, True)]
    """
    out = []
    for m in stages:
        budget, real = m.get("emulated_budget_s", 0.0), m.get("emulated_real_s", 0.0)
        if budget <= 0 or real <= budget * (1 + TOLERANCE):
            continue
        t = tier_of[m["node"]]
        frames = m["batch"]["count"] * m["batch"]["mean"] if m["batch"]["count"] else 0
        out.append(
            {
                "tier": tiers[t],
                "node": m["node"],
                "tier_ms_per_frame": budget / frames * 1e3 if frames else None,
                "host_ms_per_frame": real / frames * 1e3 if frames else None,
                "factor": round(real / budget, 2),
                "batches_over": m.get("over_budget", 0),
                "batches": m["batch"]["count"],
                "faster_than_host": bool(tier_scale) and t < len(tier_scale) and tier_scale[t] < 1.0,
            }
        )
    return out


def limits_sentence(limits: list[dict]) -> str | None:
    """One line for the screen and the report; None when emulation held everywhere."""
    if not limits:
        return None
    worst: dict[str, dict] = {}
    for r in limits:
        if r["tier"] not in worst or r["factor"] > worst[r["tier"]]["factor"]:
            worst[r["tier"]] = r
    parts = []
    for tier, r in worst.items():
        why = "a tier faster than this host" if r["faster_than_host"] else "this host is saturated"
        per = (
            f" ({r['host_ms_per_frame']:.2f} ms per frame here, {r['tier_ms_per_frame']:.2f} ms on the tier)"
            if r["tier_ms_per_frame"]
            else ""
        )
        parts.append(f"tier {tier} ran {r['factor']:g}x slower than its emulated time on {r['node']}{per}: {why}")
    return (
        "emulation could not honour the plan: "
        + "; ".join(parts)
        + ". These figures are bound by this host, not by the plan (emulation only stretches: give the tier a lower "
        "speed, fewer stages per host, or run on the real tier machines)"
    )
