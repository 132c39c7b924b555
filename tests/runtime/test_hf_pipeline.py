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
    # export kept the batch dimension dynamic: the plan says so, and the sink's stage batches at fan-in
    assert any("dynamic batch dimension" in n for n in plan.notes)
    assert report["tiers"][-1]["batchable"]


def _inputs_like(inputs, seed):
    gen = torch.Generator().manual_seed(seed)
    return tuple(
        torch.randint(0, 500, x.shape, generator=gen) if not x.dtype.is_floating_point else torch.randn(x.shape, generator=gen)
        for x in inputs
    )


@pytest.mark.parametrize("name", MODELS)
def test_hf_stages_past_the_device_run_a_batch_of_frames_equal_to_one_by_one(name):
    """No Ray: the stages a fan-in feeds get three real frames, batched, and give each frame's own result."""
    from runtime.batching import BatchRunner

    model, inputs, graph = captured(name)
    plan = partition(graph, Topology.load("smart_city"), "throughput")
    stages = plan.build_stages(model)
    # three different frames through the stages below the gateway, one by one (as the devices run them)
    frames = [dict(zip(stages[0].inputs, _inputs_like(inputs, seed))) for seed in range(3)]
    frames = [stages[0](f) for f in frames]
    for stage, spec in zip(stages[1:], plan.stages[1:]):
        expected = {n: graph[n].outputs[0] for n in spec.inputs}
        runner = BatchRunner(stage, expected, max_batch=4)
        assert runner.batchable, f"{name}: stage {spec.tier_name} does not batch"
        batched = runner.run(frames)
        with torch.inference_mode():
            for got, frame in zip(batched, frames):
                one = stage(frame)
                if stage.last:
                    compare(got, one)
                else:
                    for key in one:
                        torch.testing.assert_close(got[key], one[key])
        frames = batched if not stage.last else frames
