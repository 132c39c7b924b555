"""The parts of a stage node (runtime.node), driven without Ray: inbox, executor, compute clocks, outboxes,
link models and the acknowledgement rules; then a relay and a sink StageWorker wired to each other."""

import asyncio
import doctest
import pickle
import time
from types import SimpleNamespace

import pytest
import torch

from partition.graph import TensorSpec
from runtime.emulation import LinkShaper
from runtime.flow import ReplayBuffer
from runtime.metrics import StageMetrics
from runtime.node.acks import Marks, NodeAcks
from runtime.node.compute import EmulatedCompute, RealCompute
from runtime.node.executor import Executor
from runtime.node.inbox import Inbox
from runtime.node.links import RealLink, ShapedLink
from runtime.node.outbox import RelayOutbox, SinkOutbox
from runtime.uplink import Uplink
from runtime.versions import Version
from runtime.wire import ERROR, Frame, pack, wire_nbytes

SPEC = {"x": TensorSpec((1, 4), "float32", 16)}


def _frame(seq: int, source: int = 0, plan: int = 0, value: float = 1.0, ts: float | None = None):
    return pack(Frame(source, seq, [time.time() if ts is None else ts], {"x": torch.full((1, 4), value)}, plan))


class _Runner:
    """A stage that doubles ``x`` and fails on a frame whose ``x`` is negative (a whole batch with it fails)."""

    def __init__(self, batchable: bool = True) -> None:
        self.stage, self.batchable, self.calls = object(), batchable, []

    def run(self, values: list[dict]) -> list:
        self.calls.append(len(values))
        if any(float(v["x"].min()) < 0 for v in values):
            raise ValueError("a negative frame")
        return [{"y": v["x"] * 2} for v in values]


class _Plans:
    """Stands for runtime.versions.PlanVersions: version 0 held, others 'fetched' on demand."""

    def __init__(self, runner, per_frame_s: float | None = None, fetchable=()) -> None:
        self.versions = {0: Version(runner, SPEC, "raw", per_frame_s)}
        self.specs = {0: SPEC}
        self.fetchable, self.fetched = set(fetchable), []

    async def fetch(self, version: int) -> None:
        if version in self.fetchable:
            self.fetched.append(version)
            self.versions[version] = self.versions[0]
            self.specs[version] = SPEC


class _Parent:
    """A parent node that takes pushes into a real inbox (and records each call's ``hold_until``)."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox, self.holds = inbox, []
        self.push = SimpleNamespace(remote=self._push)
        self.hello = SimpleNamespace(remote=self._hello)

    async def _push(self, data, hold_until=None, sent_at=None) -> dict:
        self.holds.append(hold_until)
        return await self.inbox.push(data, hold_until, sent_at)

    async def _hello(self) -> str:
        return self.inbox.incarnation


def _sink_node(runner=None, per_frame_s=None, clock=None, max_batch=8):
    """An inbox -> executor -> sink outbox chain, as a StageWorker wires one."""
    metrics = StageMetrics("edge", "edge-0")
    plans = _Plans(runner or _Runner(), per_frame_s, fetchable={1})
    outbox = SinkOutbox(metrics)
    inbox = Inbox("stage 'edge' (edge-0)", plans, metrics, outbox, NodeAcks(None), "sink-1", 1 << 20, 16)
    executor = Executor("stage 'edge' (edge-0)", plans, inbox.queue, clock or RealCompute(), outbox, metrics, max_batch, 0.01)
    return SimpleNamespace(metrics=metrics, plans=plans, outbox=outbox, inbox=inbox, executor=executor)


def _arrived(results: list) -> list:
    """``take``'s results as the driver gets them (through pickle, as Ray sends them)."""
    return pickle.loads(pickle.dumps(results))


async def _take_all(outbox: SinkOutbox, n: int, max_frames: int = 1024) -> list:
    got = []
    for _ in range(200):
        got += _arrived((await outbox.take(max_frames, 0.02))["results"])
        if len(got) >= n:
            break
    return got


def test_a_malformed_frame_is_rejected_and_counted_while_the_good_ones_flow():
    async def main():
        node = _sink_node()
        task = asyncio.ensure_future(node.executor.run())
        reply = await node.inbox.push([_frame(0), b"\x93not a frame", _frame(1, plan=1), _frame(2, plan=7)])
        got = await _take_all(node.outbox, 2)
        task.cancel()
        return node, reply, got

    node, reply, got = asyncio.run(main())
    assert reply["incarnation"] == "sink-1" and reply["accepted"] == 2 and len(reply["rejected"]) == 2
    assert "stage 'edge' (edge-0)" in reply["rejected"][0]  # the message names the node
    assert node.metrics.rejected == 2 and node.metrics.frames_in == 2
    assert node.plans.fetched == [1]  # a version the node lacked was fetched, then its frame accepted
    assert [(s, q) for s, q, _, _ in got] == [(0, 0), (0, 1)]
    assert torch.equal((got[1][2]["y"]), torch.full((1, 4), 2.0))


def test_a_batch_with_one_bad_frame_fails_only_that_frame_and_error_frames_run_nothing():
    async def main():
        runner = _Runner()
        node = _sink_node(runner)
        error = pack(Frame(0, 3, [time.time()], {ERROR: "failed below"}))
        await node.inbox.push([_frame(0), _frame(1, value=-1.0), _frame(2), error])
        task = asyncio.ensure_future(node.executor.run())  # all four queued: one fan-in batch
        got = await _take_all(node.outbox, 4)
        task.cancel()
        return runner, node, got

    runner, node, got = asyncio.run(main())
    assert runner.calls == [3, 1, 1, 1]  # the batch of the three computed frames, then each alone
    values = [v for _, _, v, _ in got]
    assert [q for _, q, _, _ in got] == [0, 1, 2, 3]
    assert isinstance(values[1], Exception) and "failed on frame (0, 1)" in str(values[1])
    assert torch.equal((values[0]["y"]), torch.full((1, 4), 2.0)) and not isinstance(values[2], Exception)
    assert isinstance(values[3], Exception) and "failed below" in str(values[3])  # passed through, not run
    assert node.metrics.mixed_batches == 1 and node.executor.frames_by_plan == {0: 4}


def test_fan_in_batches_run_one_plan_version_each_in_order():
    async def main():
        runner = _Runner()
        node = _sink_node(runner)
        await node.inbox.push([_frame(0), _frame(1), _frame(2, plan=1), _frame(3)])
        task = asyncio.ensure_future(node.executor.run())
        got = await _take_all(node.outbox, 4)
        task.cancel()
        return runner, node, got

    runner, node, got = asyncio.run(main())
    assert runner.calls == [2, 1, 1] and node.executor.frames_by_plan == {0: 3, 1: 1}
    assert [q for _, q, _, _ in got] == [0, 1, 2, 3]


def test_the_emulated_clock_makes_a_stage_take_its_predicted_time_and_the_real_one_adds_no_wait():
    async def run(clock, per_frame_s):
        node = _sink_node(_Runner(), per_frame_s, clock)
        batch = [(Frame(0, i, [time.time()], {"x": torch.ones(1, 4)}), time.perf_counter()) for i in range(3)]
        start = time.perf_counter()
        await node.executor.process(batch)
        return time.perf_counter() - start, node

    emulated = EmulatedCompute(StageMetrics("edge", "edge-0"))
    took, node = asyncio.run(run(emulated, 0.05))
    assert took >= 0.15 - 0.002 and emulated.tier_s_total == pytest.approx(0.15)  # 50 ms x 3 frames
    assert emulated.tier_planned_s_total == pytest.approx(0.15) and emulated.metrics.emulated_budget_s == pytest.approx(0.15)
    real = RealCompute()
    took, node = asyncio.run(run(real, 0.05))
    assert real.tier_s_total == pytest.approx(node.metrics.compute_s.total)  # the real time, nothing added
    assert real.tier_planned_s_total == pytest.approx(0.15) and took < 0.15


def test_the_emulated_clock_books_back_to_back_and_a_speed_condition_slows_it():
    metrics = StageMetrics("device", "device-0")
    clock = EmulatedCompute(metrics, scale=4.0, speed=1.0)
    t0 = time.perf_counter()
    assert clock.book(t0, 0.001, 2, 0.01) == pytest.approx(t0 + 0.02)  # the prediction: 10 ms x 2 frames
    assert clock.book(t0, 0.001, 1, 0.01) == pytest.approx(t0 + 0.03)  # ready meanwhile: queues behind it
    clock.set_speed(0.5)  # half the tier's speed: twice the time
    assert clock.book(t0 + 1.0, 0.001, 1, 0.01) == pytest.approx(t0 + 1.02)
    assert clock.book(t0 + 2.0, 0.001, 1, None) == pytest.approx(t0 + 2.008)  # no prediction: real x scale x slowdown
    assert clock.tier_s_total == pytest.approx(0.058) and clock.tier_planned_s_total == pytest.approx(0.04)
    assert metrics.over_budget == 0 and metrics.emulated_budget_s == pytest.approx(0.058)
    fresh = EmulatedCompute(metrics)
    late = time.perf_counter() - 0.05  # a batch that took 50 ms here against its tier's 10 ms: counted, not waited for
    assert fresh.book(late, 0.05, 1, 0.01) < time.perf_counter() and metrics.over_budget == 1
    assert metrics.emulated_wait_s.values[-1] == 0.0
    assert RealCompute().book(t0, 0.001, 1, 0.01) is None


def test_a_shaped_link_holds_frames_until_their_wire_time_and_counts_no_calls():
    async def main():
        sink = _sink_node()
        parent = _Parent(sink.inbox)
        metrics = StageMetrics("gateway", "gateway-0")
        # 0.08 Mbit/s = 10,000 B/s: a frame of ~100 B is ~10 ms on the wire, + 50 ms latency
        up = Uplink(parent, metrics, credits=4, shaper=LinkShaper(bandwidth_mbps=0.08, latency_ms=50), watch_s=100.0)
        up.start()
        data = [_frame(i) for i in range(2)]
        sent = time.time()
        for i, d in enumerate(data):
            await up.send((0, i), d)
        first = await sink.inbox.queue.get()
        arrived = time.time()
        await sink.inbox.queue.get()
        up.stop()
        return up, parent, sum(wire_nbytes(d) for d in data), sent, arrived, first

    up, parent, nbytes, sent, arrived, first = asyncio.run(main())
    assert arrived - sent >= 0.05 + wire_nbytes(_frame(0)) / 10_000 - 0.003  # held until its last byte + latency
    assert all(h is not None for h in parent.holds) and first[0].seq == 0
    assert up.link.totals() == {"wire_bytes_total": nbytes, "wire_busy_s_total": pytest.approx(nbytes / 10_000)}


def test_a_real_link_delivers_at_once_and_counts_its_calls():
    async def main():
        sink = _sink_node()
        parent = _Parent(sink.inbox)
        up = Uplink(parent, StageMetrics("gateway", "gateway-0"), credits=4, watch_s=100.0)
        up.start()
        await up.send((0, 0), _frame(0))
        await sink.inbox.queue.get()
        await asyncio.sleep(0.01)  # the push reply comes back
        up.stop()
        return up, parent

    up, parent = asyncio.run(main())
    assert parent.holds == [None] and isinstance(up.link, RealLink)
    totals = up.link.totals()
    assert totals["wire_calls_total"] == 1 and totals["wire_bytes_total"] == wire_nbytes(_frame(0))


def test_a_shaped_link_changes_bandwidth_for_new_frames_only():
    link = ShapedLink(LinkShaper(bandwidth_mbps=8, latency_ms=0))  # 1 MB/s
    assert link.send(100_000, 0.0) == (pytest.approx(0.1), pytest.approx(0.1))
    link.set_bandwidth(0.8)  # 100 kB/s from now on
    assert link.send(100_000, 1.0) == (pytest.approx(1.0), pytest.approx(2.0))
    assert link.totals()["wire_busy_s_total"] == pytest.approx(1.1)


def test_a_sink_delivers_each_result_once_in_order_even_beyond_one_take():
    async def main():
        outbox = SinkOutbox(StageMetrics("edge", "edge-0"))
        now = time.time()
        frames = [Frame(0, q, [now], {"y": q}) for q in (2, 0, 1, 0)] + [Frame(1, 0, [0.0], {"y": 9})]
        await outbox.put(frames)
        first = (await outbox.take(2, 0.01))["results"]
        rest = (await outbox.take(10, 0.01))["results"]
        none = await outbox.take(10, 0.01)
        return outbox, first, rest, none

    outbox, first, rest, none = asyncio.run(main())
    delivered = [(s, q, v) for s, q, v, _ in first + rest]
    assert delivered == [(0, 0, {"y": 0}), (0, 1, {"y": 1}), (0, 2, {"y": 2}), (1, 0, {"y": 9})]
    assert none == {"results": [], "duplicates": 1} and outbox.metrics.bad_timestamps == 1  # a 1970 timestamp
    assert outbox.report()["e2e_latency_s"]["count"] == 3


def test_acknowledgements_let_a_relay_forget_exactly_what_was_delivered():
    async def main():
        sink = _sink_node()
        parent = _Parent(sink.inbox)
        up = Uplink(parent, StageMetrics("device", "device-0"), credits=4, watch_s=100.0)
        relay = RelayOutbox(up)
        acks = NodeAcks(relay.kept)
        relay.start()

        def kept():
            return [(s, q) for s in range(2) for q in range(3) if (s, q) in relay.kept]

        for key in [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]:
            assert relay.admit(key)
            await relay.put(relay.wrap([Frame(*key, [time.time()], {"x": torch.ones(1, 4)})], "raw"))
        await asyncio.sleep(0.02)
        before = kept()
        acks.from_driver({0: 1, 5: 9})  # the driver delivered source 0 up to 1 (source 5 is not carried here)
        after_driver = kept()
        sink.inbox.acks.from_driver({1: 0})  # the sink learns more; its next push reply carries it down
        await relay.put(relay.wrap([Frame(1, 2, [time.time()], {"x": torch.ones(1, 4)})], "raw"))
        await asyncio.sleep(0.02)
        after_reply = kept()
        repeat, old = relay.admit((0, 2)), relay.admit((0, 0))
        relay.stop()
        return before, after_driver, after_reply, acks.reply(), repeat, old

    before, after_driver, after_reply, reply, repeat, old = asyncio.run(main())
    assert before == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    assert after_driver == [(0, 2), (1, 0), (1, 1)]
    assert after_reply == [(0, 2), (1, 1), (1, 2)]
    assert reply == {0: 1, 1: 0}  # what this relay hands down: its own sources only
    assert repeat is False and old is True  # still kept for replay: a repeat; delivered and forgotten: new again


def test_ack_rules_move_forward_only_and_count_carried_sources_only():
    marks = Marks()
    assert [marks.carry((3, q)) for q in range(3)] == [True] * 3
    assert marks.learn({3: 1}) and not marks.learn({"3": "0"}) and not marks.learn({4: 100})
    assert marks.marks == {3: 1} and marks.covered([(3, 0), (3, 1), (3, 2)]) == [(3, 0), (3, 1)]
    assert not marks.carry((3, 1))  # sent again after it was delivered: not kept
    sink = NodeAcks(None)
    sink.from_driver({3: 1, 4: 7})
    sink.from_driver({})  # nothing new: what it knew stands
    assert sink.reply() == {3: 1, 4: 7}
    relay = NodeAcks(ReplayBuffer())
    relay.kept.add((3, 0), b"f0")
    relay.from_driver({"3": "0"})  # through JSON or msgpack
    assert len(relay.kept) == 0 and relay.reply() == {3: 0}


def test_a_relay_drops_repeats_it_still_holds_and_takes_them_again_after_a_failed_batch():
    async def main():
        metrics = StageMetrics("gateway", "gateway-0")
        up = Uplink(_Parent(None), metrics, watch_s=100.0)
        relay = RelayOutbox(up)
        inbox = Inbox("stage 'gateway' (gateway-0)", _Plans(_Runner()), metrics, relay, NodeAcks(relay.kept), "g-1", 1 << 20, 16)
        await inbox.push([_frame(0), _frame(0), _frame(1)])
        held = set(relay.holding)
        relay.release([(0, 0)])  # its batch failed: a replay of it must be accepted
        await inbox.push([_frame(0), _frame(1)])
        return metrics, held

    metrics, held = asyncio.run(main())
    assert held == {(0, 0), (0, 1)} and metrics.repeats == 2 and metrics.frames_in == 3


def test_docstring_examples_of_the_node_parts():
    import runtime.flow
    import runtime.node.acks
    import runtime.node.compute
    import runtime.node.links

    for module in (runtime.node.acks, runtime.node.links, runtime.node.compute, runtime.flow):
        assert doctest.testmod(module).failed == 0, module.__name__


# ---------------------------------------------------------------------------- the actor, wired
PINS = {"layers.0.0": "device", "layers.0.1": "gateway", "layers.1.0": "gateway", "layers.1.1": "edge"}


def _chain_stages():
    from partition import Topology, capture, partition
    from tests.models import Chain

    torch.manual_seed(0)
    model, x = Chain(8, 2).eval(), (torch.randn(1, 8),)
    plan = partition(capture(model, x, timing="analytic"), Topology.load("three_tier"), pins=PINS)
    specs = [{c.name: TensorSpec(c.shape, c.dtype, c.raw_bytes) for c in link.tensors} for link in plan.links]
    return model, plan.build_stages(model), specs


def _handle(worker) -> SimpleNamespace:
    """A StageWorker as its children's parent handle (``h.push.remote(...)``), as Ray would hand it over."""
    return SimpleNamespace(push=SimpleNamespace(remote=worker.push), hello=SimpleNamespace(remote=worker.hello))


def test_a_relay_and_a_sink_worker_wired_together_deliver_the_models_outputs_in_order():
    from runtime.actors import StageConfig, StageWorker

    model, stages, specs = _chain_stages()
    inputs = [torch.randn(1, 8) for _ in range(6)]
    below = [stages[0]({"x": x}) for x in inputs + [torch.randn(1, 8)]]  # what the device would send up

    async def main():
        conditions = ((0.0, "bandwidth_mbps", 100.0), (0.0, "speed", 0.5), (0.0, "battery_pct", 40.0))
        sink = StageWorker(StageConfig(tier=2, tier_name="edge", node="edge-0", expected=specs[1], last=True), stages[2])
        link = {"bandwidth_mbps": 50, "latency_ms": 1}
        cfg = StageConfig(1, "gateway", "gateway-0", specs[0], emulate=True, link=link, speed=1.0, conditions=conditions)
        gateway = StageWorker(cfg, stages[1], parent=_handle(sink))
        await gateway.start_clock(time.time())
        frames = [pack(Frame(0, i, [time.time()], v)) for i, v in enumerate(below)]
        reply = await gateway.push(frames[:3] + [b"junk"] + frames[3:6])
        got = []
        for _ in range(200):
            got += _arrived((await sink.take(16, 0.02, acked={0: len(got) - 1} if got else None))["results"])
            if len(got) == len(inputs):
                break
        await sink.take(16, 0.01, acked={0: 5})  # the driver has all six
        await gateway.push(frames[6:])  # the sink's reply to the next push carries that down: the gateway forgets them
        await asyncio.sleep(0.1)
        out = (await gateway.metrics_json(), await gateway.counters(), await sink.metrics_json())
        await gateway.shutdown()
        await sink.shutdown()
        return reply, got, out, gateway

    reply, got, (gw_metrics, gw_counters, sink_metrics), gateway = asyncio.run(main())
    assert reply["accepted"] == 6 and len(reply["rejected"]) == 1 and gw_metrics["rejected"] == 1
    assert [q for _, q, _, _ in got] == list(range(6))
    for (_, _, value, _), x in zip(got, inputs):
        torch.testing.assert_close(value, model(x).detach())
    # conditions reached their parts: the link model, the compute clock, the counters
    assert gateway.outbox.uplink.link.shaper.bytes_per_s == 100e6 / 8 and gateway.clock.slowdown == 2.0
    assert gw_counters["battery_pct"] == 40.0 and "wire_calls_total" not in gw_counters  # an emulated link
    assert gw_counters["wire_bytes_total"] > 0 and gw_metrics["unacked"] == 1  # only the frame not yet delivered
    assert {"e2e_latency_s", "e2e_recent_s", "duplicates_dropped"} <= set(sink_metrics) and "unacked" not in sink_metrics
    assert sink_metrics["e2e_latency_s"]["count"] == 7 and sink_metrics["frames_by_plan"] == {0: 7}
