"""The sending side of a real (unshaped) link, without Ray: its busy time is the time any push was out, so
overlapping pushes count once (the adapter reads bytes over this time as the link's rate), and the driver's
safety-net replay leaves frames on their way alone."""

import asyncio
from types import SimpleNamespace

import torch

from runtime.metrics import StageMetrics
from runtime.uplink import Uplink
from runtime.wire import Frame, pack


class Clock:
    """Stands for the ``time`` module in one runtime module (monkeypatched there only), moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def time(self) -> float:
        return 1e9 + self.now

    def tick(self) -> None:
        self.now += 1.0


class _Parent:
    """A parent whose pushes return when the test opens their gate; it records what it was sent."""

    def __init__(self) -> None:
        self.gates: list[asyncio.Event] = []
        self.got: list[list] = []
        self.push = SimpleNamespace(remote=self._push)
        self.hello = SimpleNamespace(remote=self._hello)

    async def _hello(self) -> str:
        return "parent-1"

    async def _push(self, data, hold_until=None, sent_at=None) -> dict:
        self.got.append(data)
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        return {}


def _frame(seq: int):
    return pack(Frame(0, seq, [0.0], {"x": torch.zeros(256)}), "raw")


def test_overlapping_pushes_count_once_in_the_busy_time_and_a_safety_net_replay_skips_them(monkeypatch):
    monkeypatch.setattr("runtime.uplink.time", clock := Clock())

    async def scenario():
        parent = _Parent()
        up = Uplink(parent, StageMetrics("device", "device-0"), credits=4, shaper=None, watch_s=100.0, name="t")
        up.start()
        clock.now = 0.0
        await up.send((0, 0), _frame(0))  # push A out at 0 s
        await asyncio.sleep(0.01)
        clock.now = 1.0
        await up.send((0, 1), _frame(1))  # push B out at 1 s, while A is
        await asyncio.sleep(0.01)
        replayed = await up.replay_all()  # both on their way: nothing to send again
        clock.now = 3.0
        parent.gates[0].set()  # A back at 3 s
        await asyncio.sleep(0.01)
        mid = up.wire_busy_s_total  # counted as each push returns, also while another is still out
        clock.now = 4.0
        parent.gates[1].set()  # B back at 4 s
        await asyncio.sleep(0.01)
        for task in up._tasks:
            task.cancel()
        return up, parent, replayed, mid

    up, parent, replayed, mid = asyncio.run(scenario())
    assert replayed == 0 and len(parent.got) == 2  # the replay re-sent nothing (before: both again)
    assert up.wire_calls_total == 2 and mid == 3.0
    assert up.wire_busy_s_total == 4.0  # busy from 0 to 4 s; the round trips add up to 6 s


def test_a_replay_started_by_a_restarted_parent_is_held_until_it_has_re_sent_the_unacknowledged_frames():
    """A new incarnation in a push reply starts a replay from a callback; the event loop holds tasks only weakly,
    so the uplink holds it (``_background``) until every unacknowledged frame has gone again."""

    async def scenario():
        parent = _Parent()
        up = Uplink(parent, StageMetrics("device", "device-0"), credits=4, shaper=None, watch_s=100.0, name="t")
        up.start()
        await up.send((0, 0), _frame(0))
        await asyncio.sleep(0.01)
        parent.gates[0].set()  # the first push returns without acknowledging: frame 0 stays in the replay buffer
        await asyncio.sleep(0.01)
        up.parent_incarnation = "parent-0"  # as if the parent's first life answered before
        await up._check_incarnation("parent-1")  # a reply from a new life: replay
        await asyncio.sleep(0.01)
        held = list(up._background)
        for gate in parent.gates[1:]:
            gate.set()
        await asyncio.sleep(0.01)
        for task in up._tasks:
            task.cancel()
        return up, parent, held

    up, parent, held = asyncio.run(scenario())
    assert len(held) == 1  # held while it waited for the parent to take the replayed frames
    assert [len(d) for d in parent.got] == [1, 1] and up.metrics.replayed == 1 and up.metrics.restarts_seen == 1
    assert not up._background  # let go once done
