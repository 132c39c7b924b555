"""Packed nodes without Ray: how nodes are grouped into processes, how a driver feeds them, how pushes to
another process are coalesced, and what killing one packed node does to its calls and to its neighbours."""

import asyncio
import random
from types import SimpleNamespace

import pytest

from partition import Topology
from runtime.errors import NodeGoneError, PipelineError
from runtime.feeding import Feeder
from runtime.hostshare import Courier
from runtime.packing import NodeHandle, NodeHost, load_cores, pack_groups


def tree(devices: int, gateways: int, edges: int) -> Topology:
    tiers = [{"name": n, "nodes": k, "speed": 1} for n, k in (("device", devices), ("gateway", gateways), ("edge", edges))]
    links = [{"from": "device", "to": "gateway", "bandwidth": "10 Mbit/s"}, {"from": "gateway", "to": "edge", "bandwidth": "10 Mbit/s"}]
    return Topology.from_dict({"name": "tree", "tiers": tiers, "links": links})


@pytest.mark.parametrize("seed", range(8))
def test_groups_cover_every_node_once_and_keep_subtrees_together(seed):
    rng = random.Random(seed)
    edges = rng.randint(1, 4)
    gateways = edges * rng.randint(1, 4)
    topo = tree(gateways * rng.randint(1, 5), gateways, edges)
    nodes = [n for t in topo.path for n in t.node_names()]
    processes = rng.randint(1, 6)
    groups = pack_groups(topo, processes, None)
    assert sorted(n for g in groups for n in g) == sorted(nodes)
    assert len(groups) <= processes
    assert min(map(len, groups)) >= 1  # no empty process
    where = {n: i for i, g in enumerate(groups) for n in g}
    # depth-first cuts: each process boundary separates at most one chain of parents, so the links that
    # cross processes are at most (processes - 1) x the depth of the tree
    crossing = sum(where[n] != where[p] for n, p in topo.parents.items())
    assert crossing <= (len(groups) - 1) * len(topo.path)


def test_pack_modes():
    topo = tree(4, 2, 1)
    assert pack_groups(topo, "node", None) is None
    assert pack_groups(topo, "auto", "ray://cluster:10001") is None  # on a cluster each node is a machine
    assert len(pack_groups(topo, "auto", None, emulate=False, cores=2)) == 2  # real compute: a core per process
    assert pack_groups(topo, "tier", None) == [["device-0", "device-1", "device-2", "device-3"], ["gateway-0", "gateway-1"], ["edge-0"]]
    assert pack_groups(topo, "auto", None, cores=2) == [
        [n for n in ("edge-0", "gateway-0", "device-0", "device-1", "gateway-1", "device-2", "device-3")]
    ]
    for bad in ("nodes", 0, True, 1.5):
        with pytest.raises(PipelineError, match="'auto', 'node', 'tier' or a number"):
            pack_groups(topo, bad, None)


@pytest.mark.parametrize("fps,processes", [(20.0, 1), (50.0, 2), (1000.0, 7)])
def test_auto_packs_as_many_processes_as_the_nodes_keep_cores_busy(fps, processes):
    base = tree(4, 2, 1)
    topo = Topology.from_dict({**base.model_dump(by_alias=True, exclude_none=True), "sources": [{"count": 4, "fps": fps}]})
    # stage time on this host per frame: 2 ms / 2 + 1 ms / 1 + 0.5 ms / 0.5 = 3 ms; + 2.5 ms of runtime = 5.5 ms
    plan = SimpleNamespace(tier_scale=(2.0, 1.0, 0.5), predicted=SimpleNamespace(stage_compute_s=(0.002, 0.001, 0.0005)))
    # 4 cameras x fps x 5.5 ms: 0.44 cores at 20 frames/s, 1.1 at 50, 22 at 1000 (8 cores here; 7 nodes to host)
    assert load_cores(topo, plan) == pytest.approx(4 * fps * 0.0055)
    assert len(pack_groups(topo, "auto", None, cores=8, plan=plan)) == processes


class _Calls:
    """A host (or a node's own actor) that records its feed calls; refs are ints."""

    def __init__(self, log: list, method: str) -> None:
        self.log = log
        setattr(self, method, SimpleNamespace(remote=self._call))

    def _call(self, chunks):
        self.log.append(chunks)
        return len(self.log)


def test_feeder_keeps_credits_per_node_lingers_and_feeds_a_process_in_one_call():
    now = [0.0]
    done: set = set()
    settled = []
    sent: list = []
    host = _Calls(sent, "feed_many")
    feeder = Feeder(
        credits=2,
        finished=lambda refs: done & set(refs),
        settle=lambda nodes, ref: settled.append((ref, nodes)),
        linger_s=0.01,
        clock=lambda: now[0],
    )
    for node in ("d0", "d1"):
        feeder.connect(node, None, host, group="p0")
    feeder.queue("d0", "a0")
    feeder.pump()
    assert sent == [{"d0": ["a0"]}]  # the first frame after a quiet spell goes at once
    feeder.queue("d0", "a1")
    feeder.queue("d1", "b0")
    feeder.pump()
    assert len(sent) == 1 and feeder.next_due() == pytest.approx(0.01)  # too soon: they wait to ride together
    now[0] = 0.01
    feeder.pump()
    assert sent[1] == {"d0": ["a1"], "d1": ["b0"]}  # both nodes of the process in one call
    for i in range(3):
        feeder.queue("d0", f"a{2 + i}")
    now[0] = 0.02
    feeder.pump()
    assert len(sent) == 2  # d0 has two calls out (its credits): nothing more goes to it
    done.add(1)  # the first call returns
    now[0] = 0.03
    feeder.pump()
    assert (1, ["d0"]) in settled and sent[2] == {"d0": ["a2", "a3", "a4"]}
    feeder.refeed("d1", ["b0", "b1"])  # after a stall: its undelivered frames again, in order
    done.update({2, 3})
    now[0] = 0.05
    feeder.pump()
    assert sent[3] == {"d1": ["b0", "b1"]} and feeder.waiting() == 0 and feeder.next_due() is None


def test_feeder_feeds_unpacked_nodes_each_through_its_own_actor():
    sent: list = []
    feeder = Feeder(credits=4, finished=lambda refs: set(), settle=lambda nodes, ref: None, linger_s=0.0)
    feeder.connect("d0", _Calls(sent, "feed"))
    feeder.connect("d1", _Calls(sent, "feed"))
    feeder.queue("d0", "a0")
    feeder.queue("d1", "b0")
    feeder.pump()
    assert sorted(map(tuple, sent)) == [("a0",), ("b0",)]


class _Host:
    """Another process's host: push_many records each call; the test answers each call by its index."""

    def __init__(self) -> None:
        self.calls: list = []
        self.answers: list[asyncio.Future] = []
        self.push_many = SimpleNamespace(remote=self._push_many)

    def _push_many(self, pushes):
        self.calls.append(pushes)
        self.answers.append(asyncio.get_running_loop().create_future())
        return self.answers[-1]

    def answer(self, i: int, reply) -> None:
        if isinstance(reply, BaseException):
            self.answers[i].set_exception(reply)
        else:
            self.answers[i].set_result(reply)


def test_courier_coalesces_pushes_to_one_process_and_hands_each_node_its_own_reply():
    async def main():
        host = _Host()
        courier = Courier(linger_s=60.0)  # the linger never runs out during the test: flush() ends it
        first = courier.push(NodeHandle(host, "g0"), ["f0"])
        await asyncio.sleep(0)  # the first push after a quiet spell goes on the next turn
        assert [[n for n, _ in c] for c in host.calls] == [["g0"]]
        late = [courier.push(NodeHandle(host, node), [f"f{i}"]) for i, node in enumerate(("g0", "g1", "g2"), start=1)]
        for _ in range(3):
            await asyncio.sleep(0)
        assert len(host.calls) == 1  # within the linger: they wait, together
        courier.flush()
        assert [[n for n, _ in c] for c in host.calls] == [["g0"], ["g0", "g1", "g2"]]
        host.answer(0, [{"acked": {}}])
        host.answer(1, [{"acked": {0: 1}}, NodeGoneError("node g1 was killed"), {"acked": {}}])
        assert await first == {"acked": {}}
        assert await late[0] == {"acked": {0: 1}}
        with pytest.raises(NodeGoneError):  # only the node that was killed fails
            await late[1]
        assert await late[2] == {"acked": {}}
        dead = courier.push(NodeHandle(host, "g0"), ["f9"])
        courier.flush()
        host.answer(2, RuntimeError("the process died"))
        with pytest.raises(RuntimeError, match="the process died"):  # a dead process fails every push it carried
            await dead
        assert courier.calls == 3

    asyncio.run(main())


class _Worker:
    """Stands for a StageWorker: ``take`` waits for a result that never comes."""

    made = 0

    def __init__(self, cfg, stage, parent, registry, freeze=True, batchable=None):
        _Worker.made += 1
        self.cfg, self.parent, self.incarnation = cfg, parent, f"{cfg.node}#{_Worker.made}"
        self.versions = {0: SimpleNamespace(runner=SimpleNamespace(batchable=False))}
        self.stopped = False

    async def hello(self):
        return self.incarnation

    async def take(self):
        await asyncio.Event().wait()

    async def shutdown(self):
        self.stopped = True


class _FakeHost(NodeHost):
    def _worker(self, node: str):
        cfg, parent = self.specs[node]
        return _Worker(cfg, None, parent, self.registry)


def test_killing_one_packed_node_fails_its_calls_and_leaves_the_others_alone():
    async def main():
        cfgs = [SimpleNamespace(node=n, tier=t, where=f"stage ({n})") for n, t in (("d0", 0), ("d1", 0), ("g0", 1))]
        host = _FakeHost([(cfgs[0], ("g0", "h")), (cfgs[1], ("g0", "h")), (cfgs[2], None)], None, [0, 1], "stage0", "stage1")
        assert host.workers["d0"].parent.node == "g0" and host.workers["g0"].parent is None  # a local parent: no Ray call
        before = {n: await host.call(n, "hello") for n in host.workers}
        waiting = {n: asyncio.ensure_future(host.call(n, "take")) for n in ("d0", "d1")}
        await asyncio.sleep(0)
        old = host.workers["d0"]
        new = await host.kill_node("d0")
        with pytest.raises(NodeGoneError, match="d0 was killed while it ran take"):
            await waiting["d0"]
        assert old.stopped and new != before["d0"] and await host.call("d0", "hello") == new
        assert not waiting["d1"].done() and await host.call("d1", "hello") == before["d1"]
        waiting["d1"].cancel()
        # a child giving up on its local parent (it was killed) leaves the parent's call running, as a dead
        # caller of a Ray actor would: a push cut halfway would leave the parent holding a frame it never queued
        gave_up = host.workers["d0"].parent.take.remote()
        await asyncio.sleep(0)
        gave_up.cancel()
        await asyncio.sleep(0)
        assert [t for t in host.tasks if not t.done()], "the parent's call was cut short"
        with pytest.raises(PipelineError, match="not 'x9'"):
            await host.call("x9", "hello")

    asyncio.run(main())


class _Runner:
    """A stage that doubles numbers and fails on "bad" (a whole batch with a bad frame fails)."""

    def __init__(self, stage) -> None:
        self.stage, self.calls = stage, []

    def run(self, values):
        self.calls.append(list(values))
        if "bad" in values:
            raise ValueError("a bad frame")
        return [v * 2 for v in values]


def test_stage_pool_runs_the_frames_of_several_nodes_together_and_a_bad_frame_fails_only_its_node():
    from runtime.hostshare import StagePool

    async def main():
        pool, stage = StagePool(), SimpleNamespace(module=object())
        a, b, other = _Runner(stage), _Runner(stage), _Runner(SimpleNamespace(module=object()))
        got = await asyncio.gather(pool.run(a, [1, 2]), pool.run(b, [3]), pool.run(other, [5]))
        assert got == [[2, 4], [6], [10]]
        assert a.calls == [[1, 2, 3]] and b.calls == [] and other.calls == [[5]]  # one run per stage module
        good, bad = pool.run(a, [7]), pool.run(b, ["bad"])
        assert await good == [14]  # batched with another node's bad frame, run again on its own
        with pytest.raises(ValueError, match="a bad frame"):
            await bad

    asyncio.run(main())
