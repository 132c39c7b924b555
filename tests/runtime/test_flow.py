"""Flow control, wire format, batching and the uplink, driven without Ray."""

import asyncio
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from partition import Topology, WireError, capture, partition
from partition.graph import TensorSpec
from runtime.batching import BatchRunner
from runtime.emulation import LinkShaper
from runtime.flow import ReorderBuffer, ReplayBuffer, SourceQueue
from runtime.metrics import StageMetrics
from runtime.uplink import Uplink
from runtime.wire import Frame, pack, unpack


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 20)), max_size=80), st.randoms())
def test_reorder_buffer_releases_each_frame_once_in_order(arrivals, rnd):
    # every (source, seq) below each source's max arrives at least once, in any order, some repeated
    keys = sorted({(s, q) for s, q in arrivals})
    full = [(s, q) for s in {k[0] for k in keys} for q in range(max(q for src, q in keys if src == s) + 1)]
    stream = full + [k for k in arrivals]
    rnd.shuffle(stream)
    buf = ReorderBuffer()
    out = []
    for s, q in stream:
        buf.add(s, q, (s, q))
        out += buf.ready()
    for s in {k[0] for k in full}:
        seqs = [q for src, q, _ in out if src == s]
        assert seqs == list(range(len(seqs))) and len(seqs) == sum(1 for k in full if k[0] == s)
    assert buf.duplicates == len(stream) - len(full)


def test_reorder_buffer_advance_after_restart():
    buf = ReorderBuffer()
    buf.add(0, 5, "late")
    buf.advance({0: 4})  # the driver already has 0..4
    assert buf.ready() == [(0, 5, "late")]
    assert not buf.add(0, 3, "old")


def test_source_queue_policies():
    q = SourceQueue("drop-oldest", 3)
    for i in range(10):
        q.offer(i)
    assert list(q.items) == [7, 8, 9] and q.dropped == 7
    b = SourceQueue("block", 2)
    assert [b.offer(i) for i in range(3)] == [True, True, False] and b.dropped == 0


def test_replay_buffer_forgets_acknowledged_frames():
    r = ReplayBuffer()
    for src in (0, 1):
        for seq in range(4):
            r.add((src, seq), (src, seq))
    r.ack({0: 2, 1: 0})
    assert list(r.pending()) == [(0, 3), (1, 1), (1, 2), (1, 3)]
    r.add((0, 1), "late duplicate")  # already acknowledged: not kept
    assert len(r) == 4


def test_link_shaper_queues_frames_and_adds_latency():
    link = LinkShaper(bandwidth_mbps=80, latency_ms=5)  # 10 MB/s
    assert link.schedule(100_000, 0.0) == pytest.approx((0.01, 0.015))
    assert link.schedule(100_000, 0.0) == pytest.approx((0.02, 0.025))  # waits for the first
    assert link.schedule(100_000, 1.0) == pytest.approx((1.01, 1.015))  # idle link


def test_wire_round_trip_with_plain_values_and_tuples():
    x = torch.randn(1, 4, 3, 3)
    frame = Frame(3, 17, [1.5], {"x": x, "n": 1, "shape": (1, 4), "pair": (x[:, :2], None)})
    data = pack(frame)
    expected = {"x": TensorSpec((1, 4, 3, 3), "float32", 144), "n": None, "shape": None, "pair": None}
    got = unpack(data, expected, "stage 'edge'", 1 << 20)
    assert got.key == (3, 17) and got.ts == [1.5]
    assert torch.equal(got.values["x"], x) and got.values["n"] == 1 and got.values["shape"] == [1, 4]
    assert torch.equal(got.values["pair"][0], x[:, :2]) and got.values["pair"][1] is None


@pytest.mark.parametrize(
    "data,words",
    [
        (b"\x00garbage", "not a tierpipe envelope"),
        (b"\x93\x01\x02\x03", "must be \\[envelope, payloads\\]"),
        (pack(Frame(0, 0, [0.0], {"y": torch.zeros(2)})), "missing \\['x'\\], unexpected \\['y'\\]"),
        (pack(Frame(0, 0, [0.0], {"x": torch.zeros(2, 2)})), "the plan expects \\[1, 4\\] float32"),
        (b"\x00" * (2 << 20), "over the limit"),
    ],
    ids=["garbage", "not-a-pair", "wrong-name", "wrong-shape", "over-the-limit"],
)
def test_malformed_frames_name_the_stage(data, words):
    expected = {"x": TensorSpec((1, 4), "float32", 16)}
    with pytest.raises(WireError, match=words) as err:
        unpack(data, expected, "stage 'gateway' (gateway-0)", 1 << 20)
    assert str(err.value).startswith("stage 'gateway' (gateway-0)")


def _stage(model_name):
    from partition.zoo import get_model

    model, inputs = get_model(model_name)
    graph = capture(model, inputs, timing="analytic")
    plan = partition(graph, Topology.load("three_tier"), pins={next(n.module for n in graph.nodes if n.module): "device"})
    spec = plan.stages[-1]
    expected = {c.name: (TensorSpec(c.shape, c.dtype, c.raw_bytes) if c.shape else None) for c in plan.links[-1].tensors}
    return plan.build_stages(model, tiers=[len(plan.stages) - 1])[0], expected, spec


def test_batching_is_on_only_where_it_gives_the_same_results():
    stage, expected, _ = _stage("resnet18")
    runner = BatchRunner(stage, expected)
    assert runner.batchable
    frames = [{k: torch.randn(v.shape) for k, v in expected.items()} for _ in range(3)]
    batched = runner.run(frames)
    one = [runner._call(f) for f in frames]
    for a, b in zip(batched, one):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_a_stage_on_an_accelerator_moves_a_copy_and_leaves_the_callers_model_where_it_was():
    """Found on a GPU: a stage built in this process shares the model's parameters, and moving it to the GPU
    moved the caller's model. ``meta`` stands in for the accelerator here (no CUDA on CI)."""
    from partition.zoo import get_model

    model, inputs = get_model("resnet18")
    graph = capture(model, inputs, timing="analytic")
    plan = partition(graph, Topology.load("three_tier"), pins={next(n.module for n in graph.nodes if n.module): "device"})
    expected = {c.name: TensorSpec(c.shape, c.dtype, c.raw_bytes) for c in plan.links[-1].tensors}
    stage = plan.build_stages(model, tiers=[len(plan.stages) - 1])[0]
    one, two = BatchRunner(stage, expected, device="meta"), BatchRunner(stage, expected, device="meta")
    assert {p.device.type for p in model.parameters()} == {"cpu"}  # the caller's model stays on the CPU
    assert {p.device.type for p in one.stage.module.parameters()} == {"meta"}
    assert one.stage.module is two.stage.module  # nodes of one process that run this stage share one copy


class FakeParent:
    """A parent stage that can 'restart': a new incarnation that lost what it had not finished."""

    def __init__(self):
        self.incarnation, self.received, self.alive = "one", [], True

    @property
    def push(self):
        parent = self

        class _Push:
            @staticmethod
            def remote(frames, *_timing):
                async def call():
                    await asyncio.sleep(0)
                    if not parent.alive:
                        raise ConnectionError("down")
                    parent.received += frames
                    return {"incarnation": parent.incarnation}

                return call()

        return _Push

    @property
    def hello(self):
        parent = self

        class _Hello:
            @staticmethod
            def remote():
                async def call():
                    return parent.incarnation

                return call()

        return _Hello


def test_uplink_replays_unacknowledged_frames_to_a_restarted_parent():
    async def scenario():
        parent = FakeParent()
        up = Uplink(parent, StageMetrics("s", "n"), credits=2, watch_s=0.05)
        up.start()
        for seq in range(5):
            await up.send((0, seq), f"f{seq}".encode())
        await asyncio.sleep(0.1)
        assert parent.received == [b"f0", b"f1", b"f2", b"f3", b"f4"]
        up.ack({0: 1})  # the sink has delivered 0 and 1
        parent.received, parent.incarnation = [], "two"  # restarted, lost 2..4
        await asyncio.sleep(0.3)  # the watchdog notices
        return parent.received, up.metrics.replayed

    received, replayed = asyncio.run(scenario())
    assert received == [b"f2", b"f3", b"f4"] and replayed == 3


def test_cuda_tiers_ask_ray_for_their_gpu(monkeypatch):
    """Ray hides GPUs from actors that request none, so the edge (accelerator: cuda) must request one."""
    import ray

    from runtime.deployment import Deployment

    deployment = Deployment.__new__(Deployment)  # placement only: no plan, no Ray started
    deployment.topology, deployment.address = Topology.load("smart_city"), None
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0, "GPU": 1.0})
    assert deployment.placement("edge-0", "edge", []) == {"num_cpus": 0, "num_gpus": 1.0}
    assert deployment.placement("device-3", "device", []) == {"num_cpus": 0}
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    assert deployment.placement("edge-0", "edge", []) == {"num_cpus": 0}  # no GPU: the stage runs on the CPU


def test_raw_payloads_leave_as_views_of_the_tensor_and_one_blob_is_still_accepted():
    import msgpack
    import numpy as np

    x = torch.randn(1, 4)
    envelope, payloads = pack(Frame(0, 5, [0.0], {"x": x}))
    assert isinstance(envelope, bytes) and np.shares_memory(payloads[0], x.numpy())  # no copy on the way out
    expected = {"x": TensorSpec((1, 4), "float32", 16)}
    got = unpack((envelope, [p.copy() for p in payloads]), expected, "stage 'edge'", 1 << 20)
    assert torch.equal(got.values["x"], x)
    blob = msgpack.packb([msgpack.unpackb(envelope), [p.tobytes() for p in payloads]], use_bin_type=True)
    assert torch.equal(unpack(blob, expected, "stage 'edge'", 1 << 20).values["x"], x)


def test_a_frame_with_an_absurd_timestamp_cannot_spoil_the_latency_figures():
    """The sink, driven without Ray: a frame stamped in 1970 is delivered but kept out of the latency series."""
    from partition import Topology, capture, partition
    from runtime.actors import StageConfig, StageWorker
    from tests.models import Chain

    torch.manual_seed(0)
    model, x = Chain(8, 2).eval(), (torch.randn(1, 8),)
    plan = partition(capture(model, x, timing="analytic"), Topology.load("three_tier"), pins={"layers": "edge"})
    stage = plan.build_stages(model)[2]
    expected = {c.name: TensorSpec(c.shape, c.dtype, c.raw_bytes) for c in plan.links[1].tensors}
    cfg = StageConfig(tier=2, tier_name="edge", node="edge-0", expected=expected, last=True, max_batch=1)

    async def scenario():
        sink = StageWorker(cfg, stage)
        now = time.time()
        frames = [
            pack(Frame(0, i, [ts], {n: torch.zeros(s.shape) for n, s in expected.items()}))
            for i, ts in enumerate([now - 0.01, 0.0, now - 0.02])
        ]
        reply = await sink.push(frames)
        for _ in range(100):
            await sink.take(16, 0.05)
            if len(sink.results.next_seq) and sink.results.next_seq[0] == 3:
                break
        return reply, await sink.metrics_json()

    reply, metrics = asyncio.run(scenario())
    assert reply["accepted"] == 3
    assert metrics["bad_timestamps"] == 1 and metrics["e2e_latency_s"]["count"] == 2
    assert metrics["e2e_latency_s"]["p99"] < 5.0
