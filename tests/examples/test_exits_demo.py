"""The demo's camera exit on QueueNet: placed on the camera with the default plan's cut, chosen only when it
saves uplink bytes within its error budget, and its split stages answer as the eager rule does."""

import numpy as np
import torch

from examples.smart_city import DEFAULT_SCENARIO
from examples.smart_city.demo_run import _plan
from examples.smart_city.exits import EXIT_POINT, camera_exit, exit_plan
from examples.smart_city.model import SAMPLE_FRAMES
from examples.smart_city.scenario import Scenario
from partition import Topology
from partition.exit_stage import run_with_exits


def test_the_camera_exit_keeps_the_cut_and_answers_as_the_eager_rule(tmp_path):
    import yaml
    from rich.console import Console

    scenario = Scenario.load(DEFAULT_SCENARIO, end_s=60.0)
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(scenario.topology(fps=1.0), sort_keys=False))
    topo = Topology.load(path)
    model, plan, graph, sample = _plan(topo, Console(quiet=True))
    # four copies of the 16 shipped busy frames: too few to trust the rates, enough for the mechanism
    frames = np.concatenate([np.load(SAMPLE_FRAMES)] * 4)
    em, cal = camera_exit(model, frames, steps=100)
    loose = exit_plan(graph, topo, plan, em, cal, max_error=10.0, sample=sample)  # every threshold is within budget
    assert loose.assignment == plan.assignment  # the throughput plan's cut stays
    e = loose.exits
    assert [(x.name, loose.tiers[x.tier]) for x in e.live] == [(EXIT_POINT, "device")]
    assert loose.predicted.link_bytes[0] < e.link_bytes_without[0]
    strict = exit_plan(graph, topo, plan, em, cal, max_error=1e-9, sample=sample)  # no exit is that exact
    assert strict.exits.live == ()
    thresholds = e.thresholds()
    x = torch.from_numpy(frames[:16])
    got, got_at = run_with_exits(loose.build_stages(em), (x,))
    want, want_at = em.decide((x,), thresholds)
    assert torch.equal(got_at, want_at) and (got_at == 0).any()
    torch.testing.assert_close(got, want)
