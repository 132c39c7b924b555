"""Early exits in the model: declaration, distillation, calibration, and split-with-exits against eager."""

import dataclasses

import pytest
import torch
from torch import nn

from partition import Plan, capture, partition
from partition.errors import ExitError, StageError
from partition.exit_calib import ExitBudget, calibrate
from partition.exit_choice import ExitPlan, exit_candidates
from partition.exit_stage import LiveExit, run_with_exits
from partition.exit_train import attach
from partition.exits import with_exits
from tests.models import CamNet, Chain, Concat
from tests.partition.helpers import topology

TOPO = topology()


def chain_with_exits(rule="max_softmax", points=("layers.0", "layers.2"), steps=150):
    torch.manual_seed(0)
    model = Chain(16, 6).eval()
    data = torch.randn(256, 16)
    return attach(model, list(points), data, rule=rule, steps=steps), data


def plan_with_live(em, thresholds_by_tier: dict[str, tuple[float, int]], topo=TOPO):
    """A plan of the backbone with a layer pinned to each tier and the given exits live (tests the mechanism)."""
    graph = capture(em.backbone, em.example_inputs, timing="analytic")
    plan = partition(graph, topo, pins={"layers.1": "device", "layers.3": "gateway", "layers.5": "edge"})
    live = tuple(
        LiveExit(em.index(name), name, em.exits[em.index(name)].node, tier, em.exits[em.index(name)].rule, thr)
        for name, (thr, tier) in thresholds_by_tier.items()
    )
    return dataclasses.replace(plan, exits=ExitPlan(live, "agreement", 0.0, 1.0, (0.0, 0.0, 1.0), 100, plan.predicted.link_bytes))


def test_points_resolve_to_the_value_leaving_a_module_and_bad_points_say_how_to_fix():
    model, x = Chain(16, 4).eval(), (torch.randn(2, 16),)
    em = with_exits(model, {"layers.2": nn.Linear(16, 16), "layers.0": nn.Linear(16, 16)}, example_inputs=x)
    assert [(e.name, e.node) for e in em.exits] == [("layers.0", "layers_0_1"), ("layers.2", "layers_2_1")]  # the model's order
    with pytest.raises(ExitError, match="neither a node nor a module path.*'layers'"):
        with_exits(model, {"layer9": nn.Linear(16, 16)}, example_inputs=x)
    with pytest.raises(ExitError, match=r"head returns \[2, 3\].*must return \[2, 16\]"):
        with_exits(model, {"layers.1": nn.Linear(16, 3)}, example_inputs=x)
    with pytest.raises(ExitError, match=r"must return \[2, 17\].*predicting its error"):
        with_exits(model, {"layers.1": nn.Linear(16, 16)}, rule="predicted_error", example_inputs=x)
    with pytest.raises(ExitError, match="rule 'median'"):
        with_exits(model, {"layers.1": nn.Linear(16, 16)}, rule="median", example_inputs=x)
    c, cx = Concat().eval(), (torch.randn(1, 3, 8, 8),)
    pool = lambda ch: nn.Sequential(nn.AdaptiveAvgPool2d(8), nn.Conv2d(ch, 2, 1))  # noqa: E731
    with pytest.raises(ExitError, match="parallel branches"):
        with_exits(c, {"b1": pool(4), "b3": pool(8)}, example_inputs=cx)


def test_distilled_heads_learn_the_full_model_and_calibration_counts_frames():
    em, data = chain_with_exits()
    untrained = with_exits(em.backbone, {"layers.2": nn.Linear(16, 16)}, example_inputs=(data[:1],))
    cal, cal_untrained = calibrate(em, data), calibrate(untrained, data)
    # every frame exits (threshold 0): agreement of the head with the full model on all 256 frames
    _, learned = cal.outcome({1: 0.0})
    _, chance = cal_untrained.outcome({0: 0.0})
    assert learned >= 0.8 and chance <= 0.3
    # a threshold lets through exactly the frames scoring at or above it, and raising it never raises the rate
    scores = torch.tensor(cal.scores[0])
    for thr in cal.thresholds(0):
        rates, _ = cal.outcome({0: thr})
        assert rates[0] == pytest.approx(float((scores >= thr).float().mean()))
    rates = [cal.outcome({0: t})[0][0] for t in sorted(cal.thresholds(0))]
    assert rates == sorted(rates, reverse=True)
    # both live: a frame leaves at the first exit that fires, so the shares add up to at most 1
    both, _ = cal.outcome({0: cal.thresholds(0)[2], 1: cal.thresholds(1)[2]})
    assert both.sum() <= 1.0 and both[0] == pytest.approx(cal.outcome({0: cal.thresholds(0)[2]})[0][0])


class HalfNoisy(nn.Module):
    """Frames with ``x[0] > 0`` get a term the exit point cannot see (``x[16]``): those are the hard ones."""

    def __init__(self) -> None:
        super().__init__()
        self.early = nn.Linear(16, 16)
        self.out = nn.Linear(16, 4)

    def forward(self, x):
        y = self.out(torch.relu(self.early(x[:, :16])))
        return y + 3 * x[:, 16:17] * (x[:, :1] > 0)


def test_predicted_error_heads_predict_their_error():
    torch.manual_seed(0)
    data = torch.randn(512, 17)
    em = attach(HalfNoisy().eval(), ["early"], data, rule="predicted_error", steps=600)
    cal = calibrate(em, data)
    assert cal.kind == "error"
    # the frames the head calls easy (lowest predicted error, 40%) are mostly the easy ones, and their error is far lower
    thr = cal.thresholds(0, (0.4,))[0]
    score, err = torch.tensor(cal.scores[0]), torch.tensor(cal.quality[0])
    easy = data[:, 0] <= 0
    chosen = score <= thr
    assert easy[chosen].float().mean() >= 0.9
    assert err[chosen].mean() < 0.5 * err[~chosen].mean()


@pytest.mark.parametrize("rule", ["max_softmax", "predicted_error"])
def test_split_with_exits_equals_the_eager_model_applying_the_same_rule(rule):
    em, data = chain_with_exits(rule=rule)
    cal = calibrate(em, data)
    # exits on two tiers, thresholds at which some frames leave at each and some go all the way
    live = {"layers.0": (cal.thresholds(0, (0.3,))[0], 0), "layers.2": (cal.thresholds(1, (0.5,))[0], 1)}
    plan = plan_with_live(em, live)
    stages = plan.build_stages(em)
    x = data[:64]
    got, got_at = run_with_exits(stages, (x,))
    want, want_at = em.decide((x,), {name: thr for name, (thr, _) in live.items()})
    assert torch.equal(got_at, want_at)
    assert set(got_at.tolist()) == {-1, 0, 1}  # frames left on the device, on the gateway, and went all the way
    torch.testing.assert_close(got, want)
    # frame by frame (batches of one, as a camera sends) gives the same answers
    for i in range(0, 64, 9):
        one, at = run_with_exits(stages, (x[i : i + 1],))
        assert int(at) == int(want_at[i])
        torch.testing.assert_close(one, want[i : i + 1])


def test_a_plan_with_exits_round_trips_and_needs_the_heads(tmp_path):
    em, data = chain_with_exits()
    plan = plan_with_live(em, {"layers.0": (0.5, 0)})
    plan.save(tmp_path / "plan.json")
    again = Plan.load(tmp_path / "plan.json")
    assert again.exits == plan.exits
    with pytest.raises(StageError, match="live early exits.*pass the ExitModel"):
        again.build_stages(em.backbone)


def test_partition_with_exits_chooses_them_within_the_budget_and_pays_less_upstream():
    torch.manual_seed(0)
    data = torch.randn(256, 3, 32, 32)
    em = attach(CamNet().eval(), ["stem"], data, steps=150)  # 8 classes: a 128-byte result against a 4 KiB stem output
    cal = calibrate(em, data)
    graph = capture(em.backbone, em.example_inputs, timing="analytic")
    pins = {"stem": "device", "head": "edge"}  # the camera computes the stem, the edge the rest: an exit spares both links
    strict = partition(graph, TOPO, "latency", pins=pins, exits=exit_candidates(em, cal, ExitBudget(min_agreement=1.0)))
    loose = partition(graph, TOPO, "latency", pins=pins, exits=exit_candidates(em, cal, ExitBudget(min_agreement=0.8)))
    assert strict.exits.quality >= 1.0 and not strict.exits.live  # no threshold keeps every answer on these frames
    assert loose.exits.live and loose.exits.quality >= 0.8
    uplink_share = 1.0 - loose.exits.rate_by_tier[0]
    # the uplink carries the stem's output for the frames that go on, a result frame for the others
    want = uplink_share * strict.predicted.link_bytes[0] + (1 - uplink_share) * loose.exits.result_bytes
    assert loose.predicted.link_bytes[0] == pytest.approx(want, abs=1)
    assert loose.predicted.link_bytes[0] < strict.predicted.link_bytes[0]
    assert loose.predicted.latency_s < strict.predicted.latency_s


def test_exits_that_do_not_pay_stay_off():
    # Chain's activations (64 B) are smaller than a result frame (96 B envelope + 64 B answer): no exit saves anything
    em, data = chain_with_exits()
    graph = capture(em.backbone, em.example_inputs, timing="analytic")
    plan = partition(graph, TOPO, "bytes", pins={"layers.1": "device"}, exits=exit_candidates(em, calibrate(em, data), ExitBudget(0.5)))
    assert plan.exits.live == () and plan.exits.classes_solved > 1


def test_a_budget_of_the_wrong_kind_is_refused():
    em, data = chain_with_exits(rule="predicted_error", points=("layers.1",), steps=5)
    with pytest.raises(ExitError, match="give max_error instead"):
        exit_candidates(em, calibrate(em, data), ExitBudget(min_agreement=0.9))
