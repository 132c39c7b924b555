"""Hugging Face models (export-captured) shipped to Ray actors and streamed: equal to eager, in the model's type."""

import pytest
import torch

from partition import Topology, partition
from runtime import Pipeline
from tests.partition.test_hf_models import MODELS, captured, compare

pytestmark = pytest.mark.ray_local


@pytest.mark.parametrize("name", MODELS)
def test_hf_model_runs_on_the_ray_pipeline_equal_to_eager(ray_local, name):
    model, inputs, graph = captured(name)
    topo = Topology.load("local")
    nodes = [n for n in graph.nodes if n.op != "input"]
    # work on every tier: the first third pinned to the device, the last node to the edge
    plan = partition(graph, topo, "throughput", pins={nodes[len(nodes) // 3].name: "device", nodes[-1].name: "edge"})
    assert sum(1 for t in plan.assignment.values() if t == "device") > 1
    xs = [inputs, tuple(x.clone() for x in inputs), inputs, inputs]
    with Pipeline(plan, model, topo, emulate=False, max_batch=4) as pipe:
        outputs = pipe.run(xs)
        report = pipe.report()
    torch.set_num_threads(1)
    with torch.inference_mode():
        for got, x in zip(outputs, xs):
            compare(got, model(*x))
    assert report["frames_delivered"] == len(xs) and report["duplicates_dropped"] == 0
    # export fixes the batch dimension: the plan says so, and a stage batches only where its probe showed it may
    assert any("static batch dimension" in n for n in plan.notes)
