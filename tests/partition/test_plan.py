import json

import pytest
import torch

from partition import Plan, Topology, capture, partition, run_stages
from partition.topology import shipped_topologies
from partition.zoo import model_names
from tests.models import Chain


@pytest.mark.parametrize("topo", shipped_topologies())
@pytest.mark.parametrize("name", model_names())
def test_built_stages_equal_eager_and_plan_round_trips(zoo, tmp_path, name, topo):
    model, inputs, graph = zoo(name)
    plan = partition(graph, Topology.load(topo), "throughput", model_name=name)
    # the plan is no worse than any baseline on its objective, and latency-optimal plans the same on theirs
    assert plan.predicted.throughput_fps >= max(c.throughput_fps for c in plan.baselines.values()) * (1 - 1e-9)
    path = tmp_path / "plan.json"
    plan.save(path)
    again = Plan.load(path)
    assert again == plan
    assert json.loads(path.read_text())["assignment"] == plan.assignment
    stages = again.build_stages(model)
    assert len(stages) == len(plan.tiers)
    with torch.inference_mode():
        torch.testing.assert_close(run_stages(stages, inputs), model(*inputs), rtol=0, atol=0)


@pytest.mark.parametrize("name", model_names())
def test_latency_plan_beats_every_baseline(zoo, name):
    _, _, graph = zoo(name)
    plan = partition(graph, Topology.load("smart_city"), "latency")
    assert plan.optimal
    assert plan.predicted.latency_s <= min(c.latency_s for c in plan.baselines.values()) + 1e-12


def test_multi_output_model_splits_into_the_models_structure():
    from partition import capture
    from tests.models import SMALL_MODELS

    model, inputs = SMALL_MODELS["multi_io"]()
    graph = capture(model, inputs, timing="analytic")
    plan = partition(graph, Topology.load("three_tier"), pins={"conv": "device", "cls": "gateway"})
    out = run_stages(plan.build_stages(model), inputs)
    assert set(out) == {"logits", "features"}
    torch.testing.assert_close(out, model(*inputs), rtol=0, atol=0)


def test_lossy_codec_stays_within_documented_tolerance(zoo):
    model, inputs, graph = zoo("resnet18")
    # force a cut in the middle so that activations, not the input, cross the link
    plan = partition(graph, Topology.load("three_tier"), codec="int8-channel", pins={"layer2": "device", "layer3": "gateway"})
    assert plan.accuracy is not None
    stages = plan.build_stages(model)
    with torch.inference_mode():
        ref = model(*inputs)
        got = run_stages(stages, inputs, plan.codecs)
    # documented tolerance for int8 at a cut: max error within 5% of the output's range
    assert (got - ref).abs().max() <= 0.05 * ref.abs().max()
    assert plan.accuracy.max_rel_error < 0.05


def test_auto_codec_shrinks_uplink_within_accuracy_budget(zoo):
    _, _, graph = zoo("resnet18")
    topo = Topology.load("smart_city")
    raw = partition(graph, topo)
    auto = partition(graph, topo, codec="auto")
    assert auto.predicted.latency_s < raw.predicted.latency_s
    assert auto.predicted.link_bytes[0] < raw.predicted.link_bytes[0]
    assert auto.accuracy is None or (auto.accuracy.max_rel_error <= 0.05 and auto.accuracy.top1_agreement >= 0.99)


def test_model_that_does_not_match_the_plan(zoo):
    from partition import StageError
    from partition.zoo import get_model

    _, _, graph = zoo("resnet18")
    plan = partition(graph, Topology.load("three_tier"))
    other, _ = get_model("mobilenet_v2")
    with pytest.raises(StageError, match="does not match plan"):
        plan.build_stages(other)


def test_a_plan_carries_parents_link_figures_and_the_structure_it_was_made_for():
    from partition.plan import structure_digest
    from tests.partition.helpers import topology

    torch.manual_seed(0)
    graph = capture(Chain(16, 3).eval(), (torch.randn(1, 16),), timing="analytic")
    topo = topology(nodes=(4, 2, 1))
    plan = partition(graph, topo, "latency")
    assert plan.parents == {
        "device-0": "gateway-0",
        "device-1": "gateway-0",
        "device-2": "gateway-1",
        "device-3": "gateway-1",
        "gateway-0": "edge-0",
        "gateway-1": "edge-0",
    }
    assert [(f["src"], f["dst"], f["bandwidth_mbps"]) for f in plan.link_figures] == [("device", "gateway", 20), ("gateway", "edge", 200)]
    assert Plan.from_json(json.loads(json.dumps(plan.to_json()))).topology_digest == plan.topology_digest
    # link figures and speeds do not change the structure; nodes do
    assert structure_digest(topology(nodes=(4, 2, 1), bandwidth_mbps=(2, 20), speeds=(1, 1, 1))) == plan.topology_digest
    assert structure_digest(topology(nodes=(4, 1, 1))) != plan.topology_digest
