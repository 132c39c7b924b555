"""Models nobody here wrote: Hugging Face transformers from small configs, random weights, nothing downloaded.

Captured as they come (GPT-2 with its cache on), partitioned onto smart_city, split, pickled
(as shipping a stage to an actor does) and run: equal to eager, in the model's own output type."""

import functools
import pickle

import pytest
import torch

from partition import Topology, capture, partition, run_stages

pytest.importorskip("transformers")
from examples import hf_models  # noqa: E402

MODELS = ["bert", "gpt2", "vit", "wav2vec2"]


@functools.cache
def captured(name):
    model, inputs = getattr(hf_models, name)()
    return model, inputs, capture(model, inputs, timing="analytic")


def compare(got, want):
    """The split's output against eager: same type; every tensor the split returns equals eager's."""
    assert type(got) is type(want)
    if hasattr(want, "keys"):
        for key in got.keys():
            torch.testing.assert_close(got[key], want[key])
        return
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("name", MODELS)
def test_hf_model_splits_over_three_tiers_and_equals_eager(name):
    model, inputs, graph = captured(name)
    assert graph.method == "export"
    nodes = [n.name for n in graph.nodes if n.op != "input"]
    # a cut a third and two thirds of the way through: every tier runs part of the model
    assign = {n.name: 0 for n in graph.nodes if n.op == "input"}
    assign.update({n: min(3 * i // len(nodes), 2) for i, n in enumerate(nodes)})
    from partition.split import build_stages

    stages = [pickle.loads(pickle.dumps(s)) for s in build_stages(graph, assign, ["device", "gateway", "edge"])]
    assert all(len(s.nodes) for s in stages)
    with torch.inference_mode():
        compare(run_stages(stages, inputs), model(*inputs))


@pytest.mark.parametrize("name", MODELS)
def test_hf_model_plan_on_smart_city_builds_stages_that_equal_eager(name):
    model, inputs, graph = captured(name)
    plan = partition(graph, Topology.load("smart_city"), "throughput")
    stages = [pickle.loads(pickle.dumps(s)) for s in plan.build_stages(model)]
    with torch.inference_mode():
        compare(run_stages(stages, inputs), model(*inputs))


def test_gpt2_cache_output_is_dropped_with_a_note_that_says_how_to_keep_outputs():
    model, inputs, graph = captured("gpt2")
    with torch.inference_mode():
        # the cache's field name is transformers' own (past_key_values before 5.x, cache after)
        (cache,) = [k for k, v in model(*inputs).items() if type(v).__name__ == "DynamicCache"]
    assert any(f"['{cache}'] (DynamicCache)" in n and "use_cache=False" in n for n in graph.notes)
    plan = partition(graph, Topology.load("three_tier"))
    assert any(f"['{cache}']" in n for n in plan.notes)
    with torch.inference_mode():
        got = run_stages(plan.build_stages(model), inputs)
        torch.testing.assert_close(got.logits, model(*inputs).logits)


def test_a_submodule_named_like_a_graphmodule_attribute_is_captured():
    from torch import nn

    class ImageAndMeta(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.meta = nn.Linear(6, 4)  # fx's GraphModule has an attribute named meta
            self.cls = nn.Linear(8, 3)

        def forward(self, image, meta):
            f = torch.relu(self.conv(image)).mean(dim=(2, 3))
            return self.cls(torch.cat([f, self.meta(meta)], dim=1))

    model, x = ImageAndMeta().eval(), (torch.randn(2, 3, 8, 8), torch.randn(2, 6))
    graph = capture(model, x, timing="analytic")
    assert "meta" in {n.module for n in graph.nodes}  # reported under the model's own path
    plan = partition(graph, Topology.load("three_tier"), pins={"meta": "device", "cls": "edge"})
    with torch.inference_mode():
        torch.testing.assert_close(run_stages(plan.build_stages(model), x), model(*x), rtol=0, atol=0)


def test_tied_weights_are_counted_once_per_tier_that_holds_them():
    model, _, graph = captured("gpt2")
    real = sum(t.numel() * t.element_size() for t in {p.data_ptr(): p for p in [*model.parameters(), *model.buffers()]}.values())
    assert graph.total_param_bytes == real  # wte is read by the embedding and by lm_head
    assert sum(n.param_bytes for n in graph.nodes) > real  # per op, the tied weight counts twice
    plan = partition(graph, Topology.load("three_tier"), "throughput")
    held = [graph.param_bytes_of([graph[n] for n in s.nodes]) for s in plan.stages]
    assert sum(held) >= real  # a tied weight on two tiers is stored on both
