"""What a stage node loads and what a stream's report says, on a real local Ray."""

import sys

import pytest
import torch

from partition import capture, partition
from runtime import Pipeline
from tests.models import Chain
from tests.runtime.test_pipeline import fan_in_topology

pytestmark = pytest.mark.ray_local

# tierpipe's own modules a stage actor may load: the per-frame path, nothing of planning, topology files or the demo
STAGE_MODULES = {
    "partition",
    "partition.codec",
    "partition.lazy",
    "partition.errors",
    "partition.exit_stage",
    "partition.graph",
    "partition.shapes",
    "partition.split",
    "runtime",
    "runtime.actors",
    "runtime.batching",
    "runtime.emulation",
    "runtime.errors",
    "runtime.flow",
    "runtime.metrics",
    "runtime.node",
    "runtime.node.acks",
    "runtime.node.compute",
    "runtime.node.executor",
    "runtime.node.inbox",
    "runtime.node.links",
    "runtime.node.outbox",
    "runtime.nodecpu",
    "runtime.hostshare",
    "runtime.packing",
    "runtime.registry",
    "runtime.stage_config",
    "runtime.uplink",
    "runtime.versions",
    "runtime.wire",
}
# (yaml and pydantic are not here: Ray's own worker imports them)
NEVER = ("matplotlib", "libsumo", "sumolib", "scipy", "highspy", "pint", "rich", "examples", "transformers")


@pytest.mark.parametrize("pack", ["node", 1])
def test_a_stage_actor_loads_only_the_per_frame_path_and_a_stream_reports_what_it_ran(ray_local, pack):
    import ray

    from runtime.packing import processes_of

    torch.manual_seed(0)
    model, example = Chain().eval(), (torch.randn(1, 16),)
    topo = fan_in_topology(devices=2, gateways=1, fps=20)
    plan = partition(capture(model, example, timing="analytic"), topo, "throughput", pins={"layers.0": "device"})
    with Pipeline(plan, model, topo, emulate=False, pack=pack) as pipe:
        report = pipe.stream(1.0)
        processes = processes_of(pipe.stages)  # a process per node, or one hosting them all
        loaded = {i: set(ray.get(h.__ray_call__.remote(lambda self: list(sys.modules)))) for i, h in enumerate(processes)}
    assert len(loaded) == (len(pipe.tier_of) if pack == "node" else 1)
    for node, modules in loaded.items():
        own = {m for m in modules if m.split(".")[0] in ("partition", "runtime", "examples")}
        assert own <= STAGE_MODULES, f"{node} loaded {sorted(own - STAGE_MODULES)}"
        assert not [m for m in modules if m.split(".")[0] in NEVER], node
        assert "torch" in modules
    # the report says what ran: offered rate, input shapes, objective, codecs, ops per tier, versions
    assert report["offered"] == {"streams": 2, "fps_per_stream": 20.0, "fps": 40.0, "seconds": 1.0}
    assert report["drop_share"] == 0.0 and report["frames_delivered"] == report["sent_by_sources"] > 0
    run = report["run"]
    assert run["inputs"] == [{"shape": [1, 16], "dtype": "float32"}] and run["objective"] == "throughput"
    assert run["codecs"] == list(plan.codecs) and run["assignment"]["device"]
    assert set(run["versions"]) == {"tierpipe", "ray", "torch", "python"}
    assert report["measured_bottleneck"]["where"].startswith(("tier ", "link "))
