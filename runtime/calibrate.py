"""The last step of ``tierpipe profile --address``: the whole model run as one stage on each tier, in a real pipeline.

Ops are timed one by one in a quiet task (``profiling.py``); a stage runs among the rest of a pipeline: its
node receives and decodes frames, Ray's threads share its quota, the other tiers keep the machine busy. So
each tier also runs the model whole, as the only stage with ops (``partition.baseline_plans.tier_plans``),
with emulation off, at the rate the run will stream, and the time per frame it measures (after the first
batch) over the one the profile predicts for that stage is the tier's ``scale`` (``profiles["_calls"]``),
which ``CostModel`` applies to the tier's ops and stages. The last of these runs sends the model's input
over every link: the measured transfer beyond the profiled one is added to each link's fixed time
(``call_s``), which is what the runtime's path adds to a transfer beyond the link profile's.

A run of the whole model on a tier is a candidate stage measured where it runs, as the issue's "each
op (or each candidate stage)" allows; a report's stage that is the whole model on a tier is therefore
predicted from an earlier measurement of the same stage, and the stages of split plans from the ops.
"""

from __future__ import annotations

import logging
import statistics

from partition.cost import CALLS_KEY, LINKS_KEY, CostModel
from partition.topology import Topology

__all__ = ["calibrate", "SCALE_RANGE"]

SCALE_RANGE = (0.2, 5.0)  # a calibration outside this says the profile is wrong, not off: the tier is left uncalibrated
log = logging.getLogger(__name__)


def calibrate(model, inputs, graph, topology: Topology, address: str | None, profiles: dict, fps: float | None, frames: int) -> dict:
    """Runs the model whole on each tier; sets ``profiles["_calls"][tier]["scale"]`` and corrects ``profiles["_links"]``
    in place. Returns ``{"tiers": {tier: {measured_s, profiled_s, scale}}, "links": {link: {measured_s, profiled_s}}}``.

    A tier whose measured time is far off its profile (outside ``SCALE_RANGE``) is left uncalibrated (its scale None
    in the result) and a warning names it.

    Raises:
        PipelineError: a tier's whole-model run measured nothing (names the tier).
    """
    from partition.baseline_plans import tier_plans

    from .errors import PipelineError
    from .pipeline import Pipeline
    from .stagetimes import link_times, stage_times

    cm = CostModel(graph, topology, profiles)
    plans = tier_plans(graph, topology, profiles)
    rates = [s.fps for s in topology.sources for _ in range(s.count or 1)]
    rate = fps or (statistics.fmean(rates) if rates else 10.0)
    out: dict = {"tiers": {}, "links": {}}
    last = len(topology.path) - 1
    for t, tier in enumerate(topology.path):
        plan = plans[tier.name]
        stream_fps = min(rate, 0.6 * plan.predicted.stream_fps)  # below what the stage carries: no queue, no batches
        with Pipeline(plan, model, topology, address=address, emulate=False) as pipe:
            report = pipe.stream(max(frames / stream_fps, 1.0), fps=stream_fps)
        rows = [r for r in stage_times(report, plan, cm, cm) if r["tier"] == tier.name and r["ops"] and r["measured_s"]]
        if not rows:
            raise PipelineError(f"calibrating {tier.name}: the whole model ran on no node of it ({report['frames_delivered']} frames)")
        measured, profiled = statistics.median(r["measured_s"] for r in rows), rows[0]["profiled_s"]
        scale = measured / profiled
        out["tiers"][tier.name] = {"measured_s": measured, "profiled_s": profiled, "scale": scale}
        if not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:  # kept uncalibrated, said: the ops' profile is still what it is
            out["tiers"][tier.name]["scale"] = None
            log.warning(
                "calibrating %s: the whole model took %.1f ms a frame there, its profile says %.1f ms; a profile so far off is "
                "wrong, not off: this tier is left uncalibrated. Is the node's quota what the topology says (`lab status`)?",
                tier.name,
                measured * 1e3,
                profiled * 1e3,
            )
            continue
        profiles.setdefault(CALLS_KEY, {}).setdefault(tier.name, {"stage_s": 0.0, "hop_s": 0.0})["scale"] = scale
        if t == last and last > 0:  # every link carried the model's input
            for row in link_times(report, cm):
                link = profiles.get(LINKS_KEY, {}).get(row["link"])
                if link is None or row["measured_s"] is None or row["profiled_s"] is None:
                    continue
                link["call_s"] = max(link["call_s"] + row["measured_s"] - row["profiled_s"], 0.0)
                out["links"][row["link"]] = {"measured_s": row["measured_s"], "profiled_s": row["profiled_s"]}
    return out
