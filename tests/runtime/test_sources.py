"""Frames from outside (``Pipeline.submit`` / ``poll`` / ``results``) on a real local Ray:
order and exactly-once per source, block and drop-oldest, and a stage actor killed mid-stream."""

import pytest
import ray
import torch

from runtime import Pipeline
from runtime.errors import PipelineError
from tests.runtime.test_pipeline import chain_plan, eager, fan_in_topology, kill_when_busy, shared_pipeline, slowed

pytestmark = pytest.mark.ray_local


def by_source(results):
    out = {}
    for r in results:
        out.setdefault(r.source, []).append(r)
    return out


def test_submitted_frames_come_back_once_in_order_and_equal_eager(ray_local):
    topo = fan_in_topology(devices=4, gateways=2)
    model, plan = chain_plan(topo)
    frames = {s: [torch.randn(1, 16) for _ in range(25)] for s in range(4)}
    with Pipeline(plan, model, topo, max_batch=1) as pipe:
        for i in range(25):  # interleaved, as live cameras would
            for s in range(4):
                pipe.submit(s, frames[s][i])
        results = list(pipe.results())
        assert pipe.pending() == 0 and pipe.dropped == 0
    got = by_source(results)
    assert sorted(got) == [0, 1, 2, 3]
    for s, rs in got.items():
        assert [r.seq for r in rs] == list(range(25))  # in order, gap-free, once each
        for r, want in zip(rs, eager(model, [(x,) for x in frames[s]])):
            assert torch.equal(r.output, want)
            assert r.latency_s > 0


def test_block_sources_wait_and_lose_nothing(ray_local):
    topo = fan_in_topology(devices=2, gateways=1, emulate=True, policy="block")
    model, plan = chain_plan(topo)
    # one frame in flight per source and one waiting: submit must wait for results to make room
    with Pipeline(slowed(plan, (0.01, 0.001, 0.001)), model, topo, max_batch=1, window=1, queue_per_source=1) as pipe:
        for i in range(30):
            pipe.submit(i % 2, torch.randn(1, 16))
        results = list(pipe.results())
    assert pipe.dropped == 0
    assert {s: [r.seq for r in rs] for s, rs in by_source(results).items()} == {0: list(range(15)), 1: list(range(15))}


def test_drop_oldest_sources_drop_stale_frames_and_deliver_the_rest_gap_free(ray_local):
    topo = fan_in_topology(devices=2, gateways=1, emulate=True, policy="drop-oldest")
    model, plan = chain_plan(topo)
    sent = {0: [], 1: []}
    # a device emulated at 50 ms per frame, one frame in flight per source: frames submitted back to back pile up
    with Pipeline(slowed(plan, (0.05, 0.001, 0.001)), model, topo, max_batch=1, window=1, queue_per_source=2) as pipe:
        for i in range(40):
            x = torch.full((1, 16), float(i))
            sent[i % 2].append(x)
            pipe.submit(i % 2, x)
        results = list(pipe.results())
        dropped = pipe.dropped
        report = pipe.report()
    got = by_source(results)
    assert dropped > 0 and report["drops"] >= dropped
    assert len(results) + dropped == 40  # every frame delivered or dropped, none lost
    for s, rs in got.items():
        assert [r.seq for r in rs] == list(range(len(rs)))  # dropped frames were never numbered
        # the survivors are a subsequence of what was submitted, in submission order, ending with the newest
        want = [eager(model, [(x,)])[0] for x in sent[s]]
        idx = [next(i for i, w in enumerate(want) if torch.equal(w, r.output)) for r in rs]
        assert idx == sorted(idx) and idx[-1] == len(sent[s]) - 1


@pytest.fixture(scope="module")
def pipe_to_kill():
    """Shared by the kill cases (each counts from where the last left off) and the bad-submit checks."""
    yield from shared_pipeline({"emulate": True}, (0.005, 0.005, 0.005), max_batch=1, credits=2, stall_s=2.0, window=16)


@pytest.mark.parametrize("victim", ["gateway-0", "device-1"])
def test_a_stage_killed_while_frames_stream_in_loses_and_duplicates_nothing(ray_local, pipe_to_kill, victim):
    model, pipe = pipe_to_kill
    xs = [torch.randn(1, 16) for _ in range(200)]
    first = {s: pipe.ledger.next_seq.get(s, 0) for s in (0, 1)}  # the seqs the frames before this case took
    handle = pipe.stages[victim]
    before = ray.get(handle.hello.remote())
    killer, seen = kill_when_busy(ray, pipe, victim, after_frames=20, how="node")  # one node of a packed process
    results = []
    for i, x in enumerate(xs):
        pipe.submit(i % 2, x)
        results += pipe.poll(0.0)
    results += list(pipe.results(timeout_s=60))
    killer.join(timeout=10)
    assert ray.get(handle.hello.remote()) != before  # it really died, mid-stream
    assert seen["frames_in"] < 100
    got = by_source(results)
    for s in (0, 1):
        assert [r.seq for r in got[s]] == list(range(first[s], first[s] + 100))
        for r, want in zip(got[s], eager(model, [(x,) for x in xs[s::2]])):
            assert torch.equal(r.output, want)


def test_submit_names_the_bad_source_and_shape(ray_local, pipe_to_kill):
    _, pipe = pipe_to_kill
    with pytest.raises(PipelineError, match=r"source 7 does not exist.*2 streams"):
        pipe.submit(7, torch.randn(1, 16))
    with pytest.raises(PipelineError, match=r"got \[1, 8\].*expects \[1, 16\]"):
        pipe.submit(0, torch.randn(1, 8))
    assert pipe.pending() == 0  # neither frame went in
