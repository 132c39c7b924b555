"""The last step of ``tierpipe profile --address``: the whole model run as one stage on each tier, in a real pipeline.

Ops are timed one by one in a quiet task (``profiling.py``); a stage runs among the rest of a pipeline: its
node receives and decodes frames, Ray's threads share its quota, the other tiers keep the machine busy. So
each tier also runs the model whole, as the only stage with ops (``partition.baseline_plans.tier_plans``),
with emulation off, at the rate the run will stream, and the time per frame it measures (after the first
batch) over the one the profile predicts for that stage is the tier's ``scale`` (``profiles["_calls"]``),
which ``CostModel`` applies to the tier's ops and stages. The last of these runs sends the model's input
over every link: the measured transfer beyond the profiled one is added to each link's fixed time
(``call_s``), which is what the runtime's path adds to a transfer beyond the link profile's.

Each tier also runs a one-op stage (``partition.baseline_plans.probe_plans``: the model's first op, or on the
last tier its outputs). The two points give a line, measured = ``offset_s`` + ``scale`` x profiled
(:func:`fit_line`): on a slow tier a small stage pays for the frame's arrival (Ray's receive, the decoding) out of
the same CPU quota, an additive cost that a scale alone would put on the big stages instead. Where the two points
do not give a sensible line (too close, or a slope outside ``SCALE_RANGE``), the tier gets the scale alone.

A run of the whole model on a tier is a candidate stage measured where it runs, as the issue's "each
op (or each candidate stage)" allows; a report's stage that is the whole model on a tier is therefore
predicted from an earlier measurement of the same stage, and the stages of split plans from the ops.
"""

from __future__ import annotations

import logging
import statistics

from partition.cost import CALLS_KEY, LINKS_KEY, MAX_OFFSET_S, CostModel
from partition.topology import Topology

__all__ = ["calibrate", "fit_line", "SCALE_RANGE"]

SCALE_RANGE = (0.2, 5.0)  # a calibration outside this says the profile is wrong, not off: the tier is left uncalibrated
log = logging.getLogger(__name__)


def fit_line(whole: tuple[float, float], small: tuple[float, float] | None) -> tuple[float, float] | None:
    """``(scale, offset_s)`` from the (profiled, measured) seconds of the whole model and of a small stage on one
    tier: the line through both, or the scale alone (offset 0) where there is no small point, the points are too
    close (the small stage's profile over half the whole's), the line's slope is outside ``SCALE_RANGE`` or its
    offset beyond ``MAX_OFFSET_S``; None where the whole model's measured over profiled time is outside
    ``SCALE_RANGE`` (the profile is wrong, not off), whatever the small point says. The offset is kept from taking
    more than half of the small stage's time away.

    >>> fit_line((0.010, 0.012), (0.001, 0.0015))     # 1.167 x profiled + 0.33 ms
    (1.166667, 0.000333)
    >>> fit_line((0.010, 0.012), None), fit_line((0.010, 0.012), (0.008, 0.003)), fit_line((0.010, 0.1), (0.001, 0.091))
    ((1.2, 0.0), (1.2, 0.0), None)
    """
    w_prof, w_meas = whole
    if not w_prof > 0 or not SCALE_RANGE[0] <= w_meas / w_prof <= SCALE_RANGE[1]:
        return None
    plain = (round(w_meas / w_prof, 6), 0.0)
    if small is None or not 0 < small[0] <= 0.5 * w_prof:
        return plain
    slope = (w_meas - small[1]) / (w_prof - small[0])
    offset = max(small[1] - slope * small[0], -0.5 * small[1])
    if not SCALE_RANGE[0] <= slope <= SCALE_RANGE[1] or abs(offset) > MAX_OFFSET_S:
        return plain
    return round(slope, 6), round(offset, 6)


def _measure(plan, model, topology, address, tier: str, cm, rate: float, frames: int) -> tuple[float, float, dict] | None:
    """(profiled, measured) seconds per frame of ``plan``'s stage on ``tier``, run in a real pipeline, and the report;
    None where that stage ran on no node."""
    from .pipeline import Pipeline
    from .stagetimes import stage_times

    stream_fps = min(rate, 0.6 * plan.predicted.stream_fps)  # below what the stage carries: no queue, no batches
    with Pipeline(plan, model, topology, address=address, emulate=False) as pipe:
        report = pipe.stream(max(frames / stream_fps, 1.0), fps=stream_fps)
    rows = [r for r in stage_times(report, plan, cm, cm) if r["tier"] == tier and r["ops"] and r["measured_s"]]
    if not rows:
        return None
    return rows[0]["profiled_s"], statistics.median(r["measured_s"] for r in rows), report


def calibrate(model, inputs, graph, topology: Topology, address: str | None, profiles: dict, fps: float | None, frames: int) -> dict:
    """Runs the model whole and a one-op stage on each tier; sets ``profiles["_calls"][tier]["scale"]``
    and ``offset_s`` (:func:`fit_line`) and corrects ``profiles["_links"]`` in place. Returns ``{"tiers": {tier:
    {measured_s, profiled_s, small_measured_s, small_profiled_s, scale, offset_s}}, "links": {link: {measured_s,
    profiled_s}}}`` (``small_*`` None where the one-op stage was not run or failed).

    A tier whose whole-model time is far off its profile (outside ``SCALE_RANGE``) is left uncalibrated (its scale
    and offset None in the result) and a warning names it.

    Raises:
        PipelineError: a tier's whole-model run measured nothing (names the tier).
    """
    from partition.baseline_plans import probe_plans, tier_plans

    from .errors import PipelineError
    from .stagetimes import link_times

    cm = CostModel(graph, topology, profiles)
    plans, probes = tier_plans(graph, topology, profiles), probe_plans(graph, topology, profiles)
    rates = [s.fps for s in topology.sources for _ in range(s.count or 1)]
    rate = fps or (statistics.fmean(rates) if rates else 10.0)
    out: dict = {"tiers": {}, "links": {}}
    last = len(topology.path) - 1
    for t, tier in enumerate(topology.path):
        whole = _measure(plans[tier.name], model, topology, address, tier.name, cm, rate, frames)
        if whole is None:
            raise PipelineError(f"calibrating {tier.name}: the whole model ran on no node of it")
        profiled, measured, report = whole
        small = None
        if tier.name in probes:
            try:
                small = _measure(probes[tier.name], model, topology, address, tier.name, cm, rate, frames)
            except PipelineError as exc:  # the small point only refines the line: the scale alone still calibrates
                log.warning("calibrating %s: the one-op stage's run failed (%s); the whole model's scale alone", tier.name, exc)
        if t == last and last > 0:  # every link carried the model's input, whatever the tier's own fit
            for row in link_times(report, cm):
                link = profiles.get(LINKS_KEY, {}).get(row["link"])
                if link is None or row["measured_s"] is None or row["profiled_s"] is None:
                    continue
                link["call_s"] = max(link["call_s"] + row["measured_s"] - row["profiled_s"], 0.0)
                out["links"][row["link"]] = {"measured_s": row["measured_s"], "profiled_s": row["profiled_s"]}
        fit = fit_line((profiled, measured), small[:2] if small else None)
        out["tiers"][tier.name] = {
            "measured_s": measured,
            "profiled_s": profiled,
            "small_measured_s": small[1] if small else None,
            "small_profiled_s": small[0] if small else None,
            "scale": fit[0] if fit else None,
            "offset_s": fit[1] if fit else None,
        }
        if fit is None:  # kept uncalibrated, said: the ops' profile is still what it is
            log.warning(
                "calibrating %s: the whole model took %.1f ms a frame there, its profile says %.1f ms; a profile so far off is "
                "wrong, not off: this tier is left uncalibrated. Is the node's quota what the topology says (`lab status`)?",
                tier.name,
                measured * 1e3,
                profiled * 1e3,
            )
            continue
        entry = profiles.setdefault(CALLS_KEY, {}).setdefault(tier.name, {"stage_s": 0.0, "hop_s": 0.0})
        entry["scale"], entry["offset_s"] = fit
    return out
