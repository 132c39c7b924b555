"""Switching a running pipeline to a new plan: no frame lost or duplicated, order kept, old plan on failure."""

import dataclasses
import time

import pytest
import torch

from partition import capture, partition
from runtime import Pipeline
from runtime.errors import SwitchError
from tests.runtime.test_pipeline import chain_plan, eager, fan_in_topology

pytestmark = pytest.mark.ray_local


def two_plans(topo):
    model, plan = chain_plan(topo)  # a layer pinned to each tier
    graph = capture(model, (torch.randn(1, 16),), timing="analytic")
    # another cut: most layers on the edge, the gateway only forwards
    other = partition(graph, topo, "latency", pins={"layers.0": "device", "layers.2": "edge"})
    assert [len(s.nodes) for s in plan.stages] != [len(s.nodes) for s in other.stages]
    return model, plan, other


def check_delivery(results, inputs, model, sources):
    """Every frame once, in order per source, equal to eager (frame i went to source i % sources)."""
    ref = eager(model, inputs)
    by_source = {}
    for r in results:
        by_source.setdefault(r.source, []).append(r.seq)
        torch.testing.assert_close(r.output, ref[r.seq * sources + r.source])
    assert {s: seqs for s, seqs in by_source.items()} == {s: list(range(len(inputs) // sources)) for s in range(sources)}


def stream_through_switch(pipe, new_plan, sources=2, before=30, after=30, during_switch=None, switch_sources=None):
    """Frames before, during and after a switch (it runs in the background while frames keep coming);
    ``switch_sources``: only these sources' frames move to the new plan."""
    torch.manual_seed(1)
    inputs, results = [], []

    def one():
        x = (torch.randn(1, 16),)
        pipe.submit(len(inputs) % sources, *x)
        inputs.append(x)
        results.extend(pipe.poll(0.0))

    for _ in range(before):
        one()
    pipe.switch(new_plan, wait=False, sources=switch_sources)
    if during_switch is not None:
        during_switch()
    while pipe.switching:  # frames keep flowing while every actor loads the new stage
        one()
        time.sleep(0.01)
    during = len(inputs) - before
    for _ in range(after + (-len(inputs) - after) % sources):
        one()
    results += list(pipe.results(timeout_s=120))
    return inputs, results, during


def test_switch_under_load_keeps_every_frame_once_in_order(ray_local):
    import ray

    topo = fan_in_topology(devices=2, gateways=1)
    model, plan, other = two_plans(topo)
    with Pipeline(plan, model, topo, max_batch=4) as pipe:
        inputs, results, during = stream_through_switch(pipe, other)
        assert pipe.switch_error is None and pipe.switch_done["version"] == 1 and pipe.version == 1
        metrics = ray.get(pipe.stages["edge-0"].metrics_json.remote())
        report = pipe.report()
    assert during > 0  # frames were submitted while the switch ran
    check_delivery(results, inputs, model, 2)
    # frames ran on both plans, each on one: the sink saw them all, split between versions 0 and 1
    assert set(metrics["frames_by_plan"]) == {0, 1} and sum(metrics["frames_by_plan"].values()) == len(inputs)
    assert metrics["frames_by_plan"][1] >= 30  # at least every frame submitted after it
    assert report["frames_delivered"] == len(inputs) and report["duplicates_dropped"] == 0


@pytest.mark.parametrize("pack,how", [("node", "process"), ("tier", "process"), ("tier", "node")])
def test_an_actor_killed_during_a_switch_loses_nothing(ray_local, pack, how):
    import os
    import signal

    import ray

    topo = fan_in_topology(devices=2, gateways=1)
    model, plan, other = two_plans(topo)
    killed = []
    with Pipeline(plan, model, topo, max_batch=4, pack=pack) as pipe:

        def kill_gateway():  # its process (SIGKILL, as a crash), or the gateway node alone in its packed process
            if how == "process":
                os.kill(ray.get(pipe.stages["gateway-0"].pid.remote()), signal.SIGKILL)
            else:
                pipe.kill("gateway-0")
            killed.append(True)

        inputs, results, _ = stream_through_switch(pipe, other, during_switch=kill_gateway)
        report = pipe.report()
    assert killed  # the fault happened
    # the switch either went through (the restarted gateway fetched the new stage) or failed cleanly
    assert (pipe.switch_done is not None) != (pipe.switch_error is not None)
    # each frame delivered once, in order (replays after the kill arrive twice at the sink, which drops them)
    check_delivery(results, inputs, model, 2)
    assert report["frames_delivered"] == len(inputs)


def test_a_failed_switch_leaves_the_old_plan_running_and_says_why(ray_local):
    topo = fan_in_topology(devices=2, gateways=1)
    model, plan, other = two_plans(topo)
    # a plan whose edge stage receives a value the model does not have: its stage cannot be built
    broken = dataclasses.replace(
        other, stages=other.stages[:-1] + (dataclasses.replace(other.stages[-1], inputs=other.stages[-1].inputs + ("no_such_value",)),)
    )
    inputs = [(torch.randn(1, 16),) for _ in range(40)]
    with Pipeline(plan, model, topo, max_batch=4) as pipe:
        first = pipe.run(inputs[:20])
        with pytest.raises(SwitchError, match=r"plan version 1 .*old plan \(version 0\) runs on"):
            pipe.switch(broken)
        assert pipe.version == 0 and pipe.plan is plan
        # a plan made for other nodes (three devices where two run) is refused before anything loads
        elsewhere = partition(capture(model, (torch.randn(1, 16),), timing="analytic"), fan_in_topology(devices=3, gateways=1), "latency")
        assert elsewhere.topology_digest != plan.topology_digest
        with pytest.raises(SwitchError, match="another node structure"):
            pipe.switch(elsewhere)
        assert pipe.version == 0 and pipe.plan is plan
        rest = pipe.run(inputs[20:])
    for got, want in zip(first + rest, eager(model, inputs)):
        torch.testing.assert_close(got, want)


def same_stage(a, b) -> bool:
    return (a.nodes, a.inputs, a.outputs) == (b.nodes, b.inputs, b.outputs)


def two_plans_and_inputs(seed):
    """Two devices on one gateway, two plans for them, and 20 seeded inputs."""
    topo = fan_in_topology(devices=2, gateways=1)
    model, plan, other = two_plans(topo)
    torch.manual_seed(seed)
    return topo, model, plan, other, [(torch.randn(1, 16),) for _ in range(20)]


def test_one_probe_a_tier_and_a_switch_back_reuses_what_the_actors_hold(ray_local):
    import ray

    topo, model, plan, other, inputs = two_plans_and_inputs(2)
    with Pipeline(plan, model, topo, max_batch=4) as pipe:
        there = pipe.switch(other)
        back = pipe.switch(plan)
        got = pipe.run(inputs)
        metrics = ray.get(pipe.stages["edge-0"].metrics_json.remote())
    want: dict[str, int] = {}
    for t, nodes in enumerate([2, 1, 1]):
        if same_stage(plan.stages[t], other.stages[t]):  # a tier the other plan leaves as it is
            want["reused"] = want.get("reused", 0) + nodes
        else:  # its first actor probes, the rest are told
            want["probed"] = want.get("probed", 0) + 1
            if nodes > 1:
                want["told"] = want.get("told", 0) + nodes - 1
    assert want.get("probed")  # the plans differ somewhere
    assert there["loads"] == want
    assert back["loads"] == {"reused": 4}  # version 2 is version 0's stages: nothing loaded
    assert pipe.version == 2 and metrics["frames_by_plan"] == {2: 20}
    for a, b in zip(got, eager(model, inputs)):
        torch.testing.assert_close(a, b)


def test_an_actor_restarted_after_a_switch_fetches_the_new_stage_from_the_registry(ray_local):
    import os
    import signal

    import ray

    topo, model, plan, other, inputs = two_plans_and_inputs(3)
    with Pipeline(plan, model, topo, max_batch=4) as pipe:
        pipe.switch(other)
        gateway = pipe.stages["gateway-0"]
        before = ray.get(gateway.hello.remote())
        os.kill(ray.get(gateway.pid.remote()), signal.SIGKILL)
        deadline = time.time() + 60
        while True:  # Ray starts it again from version 0's stage
            try:
                after = ray.get(gateway.hello.remote(), timeout=5)
                break
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                assert time.time() < deadline, "the gateway did not come back"
                time.sleep(0.2)
        got = pipe.run(inputs)
        metrics = ray.get(gateway.metrics_json.remote())
    assert after != before  # a new incarnation ...
    assert metrics["frames_by_plan"] == {1: 20}  # ... ran version 1's frames on version 1's stage
    for a, b in zip(got, eager(model, inputs)):
        torch.testing.assert_close(a, b)
