"""Live adaptation with early exits: a plan made with exits is re-planned with them (the candidates and the
accuracy budget ride in the plan), and on a real local Ray an uplink drop switches to a plan with an exit
turned on, within the budget, with every frame delivered once and in order per source."""

import time

import pytest
import torch

from partition import capture, partition
from partition.conditions import ConditionSpec
from partition.exit_calib import ExitBudget, calibrate
from partition.exit_choice import exit_candidates
from partition.exit_train import attach
from runtime import Pipeline
from runtime.adapt import Adapter
from tests.models import CamNet
from tests.runtime.test_adapt import cameras

# a camera runs a stem convolution in 5 ms and the head's first convolution in 50 ms (fixed, as measured
# profiles would say): after an uplink drop the stem moves to the cameras, the head never does
PROFILES = {"device": {"stem_0": 0.005, "stem_2": 0.005, "stem_4": 0.005, "head_0": 0.05}}
BUDGET = ExitBudget(min_agreement=0.995)


@pytest.fixture(scope="module")
def camnet_with_exit():
    """CamNet on 32 x 32 images with a distilled exit after its stem, calibrated on 256 frames.

    The classifier is made steeper (weights x 40) so that the exit's answers sometimes disagree with the
    full model's: at the candidate thresholds where 60% or more of the frames leave there, 2 of 256 disagree
    (agreement 0.992), so the budget of 0.995 leaves only the thresholds where 40% and 20% leave."""
    torch.manual_seed(0)
    model = CamNet().eval()
    with torch.no_grad():
        model.head[-1].weight.mul_(40)
        model.head[-1].bias.zero_()
    data = torch.randn(256, 3, 32, 32)
    em = attach(model, ["stem"], data, steps=150)
    cal = calibrate(em, data)
    graph = capture(em.backbone, em.example_inputs, timing="analytic")
    return em, data, graph, exit_candidates(em, cal, BUDGET)


def test_pipeline_adapt_true_replans_with_the_exits_the_plan_carries(camnet_with_exit):
    em, _, graph, c = camnet_with_exit
    plan = partition(graph, cameras(), "throughput", codec="auto", profiles=PROFILES, exits=c)
    assert plan.exits.live == () and plan.exits.candidates == c  # at 20 Mbit/s no exit pays; the plan keeps what it chose from
    adapter = Adapter.for_pipeline(plan, em)  # what Pipeline(plan, em, topo, adapt=True) makes
    assert set(adapter.graph.index) == set(graph.index)  # the backbone, as partition captured it

    class Attached:  # what attach reads of a pipeline
        topology, model, emulate = cameras(), em, False

    adapter.attach(Attached())
    assert adapter.replanner.exits_for(plan) == (c, "")
    Attached.model = em.backbone  # a bare model cannot run exit heads: re-planned without exits
    adapter.attach(Attached())
    assert adapter.replanner.exits_for(plan) == (None, "")


def stream_keeping_results(pipe, seconds: float, fps: float, samples: list) -> list:
    """What ``Pipeline.stream`` does (each camera a frame every ``1 / fps`` s, in turn), keeping the results."""
    got, k, n = [], 0, len(pipe.stream_nodes)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        src, tick = k % n, k // n
        pipe.submit(src, *samples[(tick + src) % len(samples)])
        k += 1
        due = start + k / (fps * n)
        while (now := time.perf_counter()) < due:
            got += pipe.poll(min(due - now, 0.05))
    return got + list(pipe.results(timeout_s=60))


@pytest.mark.ray_local
def test_an_uplink_drop_turns_an_exit_on_within_the_budget_with_nothing_lost(ray_local, camnet_with_exit):
    em, data, graph, c = camnet_with_exit
    topo = cameras()
    plan = partition(graph, topo, "throughput", codec="auto", profiles=PROFILES, exits=c)
    # at 20 Mbit/s the image goes up (int8, 3 KB in 1.2 ms): nothing on the cameras, so no exit there
    assert not plan.stages[0].nodes and plan.exits.live == ()
    # no exits= here: the adapter re-plans with the candidates and budget the plan carries
    adapter = Adapter(graph, codec="auto", profiles=PROFILES, window_s=2.0, hold_s=30.0)
    # at 0.1 Mbit/s the image takes 250 ms a frame; the stem's output 22 ms, the uplink's bottleneck: an exit
    # after the stem on the camera sends a 128-byte result instead for the frames it answers
    drop = [ConditionSpec(at="1 s", link="device->gateway", bandwidth="0.1 Mbit/s")]
    samples = [(data[i : i + 1],) for i in range(64)]  # calibration frames: the exit answers some of them
    with Pipeline(plan, em, topo, conditions=drop, adapt=adapter, graph=graph) as pipe:
        results = stream_keeping_results(pipe, 12, 10.0, samples)
        report = pipe.report()
    # every frame exactly once and in order per camera, across the switch
    for source in range(len(pipe.stream_nodes)):
        seqs = [r.seq for r in results if r.source == source]
        assert seqs == list(range(pipe.ledger.next_seq[source])) and seqs
    assert len(results) == pipe.admitted and pipe.dropped == 0 and report["duplicates_dropped"] == 0
    switches = report["plan_switches"]
    assert len(switches) == 1, switches  # one drop, one switch (hold time: no flapping)
    s = switches[0]
    assert s["version"] == 1 and s["error"] is None and "link 0 Mbit/s" in s["reason"]
    new = pipe.plans[1].exits
    assert [(e.name, e.tier) for e in new.live] == [("stem", 0)]  # an exit turned on, on the cameras
    assert new.kind == "agreement" and new.bound == BUDGET.min_agreement and new.quality >= new.bound  # within the budget
    assert s["exits"]["before"] == [] and s["exits"]["after"] == [e.to_json() for e in new.live]
    assert f"exits: stem on at {new.live[0].threshold:.3g} on device" in s["reason"]
    assert s["exits"]["change"] in s["reason"]
    assert report["plan_version"] == 1 and pipe.plans[1].stages[0].nodes  # the stem now runs on the cameras
    device = next(t for t in report["tiers"] if t["tier"] == "device")
    assert device["exited"] > 0  # frames after the switch were answered on the cameras
    print(f"\n{s['reason']}: at {s['at_s']} s, took {s['switch_s']} s; {len(results)} frames, {device['exited']} answered on the cameras")


def test_a_switch_reloads_a_stage_whose_exits_differ(camnet_with_exit):
    """Actors keep the stages of earlier versions and reuse one that is the same: a stage with a lower
    threshold (or an exit more or less) is another module, not the same one."""
    import dataclasses

    from partition.exit_choice import ExitPlan
    from partition.exit_stage import LiveExit
    from runtime.switch import _stage_key

    _, _, graph, c = camnet_with_exit
    plan = partition(graph, cameras(), "throughput", codec="auto", profiles=PROFILES, pins={"stem": "device", "head": "gateway"})

    def with_exit(threshold):
        live = (LiveExit(0, "stem", c.nodes[0], 0, "max_softmax", threshold),) if threshold is not None else ()
        return dataclasses.replace(plan, exits=ExitPlan(live, "agreement", 0.995, 1.0, (), 128, ()))

    low, high, off = with_exit(c.thresholds[0][0]), with_exit(c.thresholds[0][-1]), with_exit(None)
    assert _stage_key(low, 0) != _stage_key(high, 0)  # a lower threshold: load it
    assert _stage_key(low, 0) != _stage_key(plan, 0) and _stage_key(off, 0) == _stage_key(plan, 0)  # an exit turned on: load it
    assert _stage_key(low, 0) == _stage_key(with_exit(c.thresholds[0][0]), 0)  # the same exit: reuse
    assert _stage_key(low, 1) == _stage_key(high, 1) == _stage_key(plan, 1)  # the gateway's stage is the same
