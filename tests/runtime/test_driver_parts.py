"""The driver's parts (runtime.driver), without Ray: each is a plain class the pipeline's step loop drives."""

from __future__ import annotations

import doctest

import pytest

import runtime.driver.admission
import runtime.driver.clock
import runtime.driver.collect
import runtime.driver.plans
import runtime.driver.recovery
import runtime.driver.switching
from runtime.delivery import Ledger
from runtime.driver import Admission, Collector, ConditionsClock, DriverView, Observer, PlanBook, Recovery, Switcher
from runtime.errors import SwitchError


@pytest.mark.parametrize(
    "module",
    [runtime.driver.admission, runtime.driver.clock, runtime.driver.collect, runtime.driver.plans, runtime.driver.recovery,
     runtime.driver.switching],
)  # fmt: skip
def test_docstring_examples(module):
    failed, tried = doctest.testmod(module)
    assert tried > 0 and failed == 0


def test_plan_book_routes_only_known_versions_and_moves_only_the_routed_sources():
    book = PlanBook("p0")
    with pytest.raises(SwitchError, match="no plan version 3"):
        book.route([0], 3)
    book.adopt(1, "p1", sources=[2, 5])
    assert (book.version, book.routes, book.in_use()) == (0, {2: 1, 5: 1}, [0, 1])
    assert book.label == "v0 (v1 on 2 cameras)"
    book.adopt(2, "p2")  # every unrouted source moves; routed ones stay where they are
    assert (book.version_for(0), book.version_for(2), book.plan) == (2, 1, "p2")
    book.route([2, 5], None)  # back to the pipeline's plan
    assert book.routes == {} and book.next_version() == 3


def test_admission_blocks_a_full_block_source_and_respects_each_window():
    adm = Admission(lambda s: "block" if s == 0 else "drop-oldest", window=1, per_source=1)
    assert adm.offer(0, "a") and not adm.offer(0, "b")  # block: the caller waits and offers again
    assert adm.offer(1, "x") and adm.offer(1, "y") and adm.dropped == 1  # drop-oldest: "x" is gone, counted
    flight: dict[int, list] = {0: [], 1: []}
    adm.admit(lambda s: len(flight[s]), lambda s, item: flight[s].append(item))
    assert flight == {0: ["a"], 1: ["y"]} and adm.waiting() == 0
    assert adm.offer(0, "b") and adm.waiting() == 1
    adm.admit(lambda s: len(flight[s]), lambda s, item: flight[s].append(item))
    assert flight[0] == ["a"] and adm.waiting() == 1  # window full: it waits
    flight[0].clear()  # its result came back
    adm.admit(lambda s: len(flight[s]), lambda s, item: flight[s].append(item))
    assert flight[0] == ["b"] and adm.queued == set()


def test_collector_delivers_each_frame_once_and_sees_a_restarted_sink():
    led = Ledger()
    for _ in range(3):
        led.admit(0, "device-0", b"")
    c = Collector(led)
    got, restarted = c.take("edge-0", {"incarnation": "a", "results": [(0, 0, "y0", 0.1), (0, 2, "y2", 0.1)]})
    assert [r.seq for r in got] == [0, 2] and not restarted
    got, restarted = c.take("edge-0", {"incarnation": "b", "results": [(0, 0, "y0", 0.1), (0, 1, "y1", 0.1)]})
    assert [r.seq for r in got] == [1] and restarted and led.duplicates == 1 and not led.held
    c.hold(got)
    assert c.drain() == got and c.drain() == []


def test_recovery_stalls_only_with_frames_in_flight_and_feeds_only_devices_that_answer():
    t = [0.0]
    answers = {"call-d0": True, "call-d1": False}
    rec = Recovery(3.0, hello=lambda n: f"call-{n}", finished=set, answered=answers.get, clock=lambda: t[0])
    t[0] = 10.0
    assert not rec.stalled(holding=False)  # nothing in flight: a quiet stream is no stall
    assert rec.stalled(holding=True) and not rec.stalled(holding=True)
    rec.progress()
    t[0] = 12.0
    assert not rec.stalled(holding=True)
    rec.ask(["d0", "d1"])
    rec.ask(["d0"])  # already asked: not asked twice
    assert [node for node, _ in rec.asked.values()] == ["d0", "d1"]
    assert rec.back() == ["d0"] and rec.asked == {}  # d1 still restarting: the next stall asks again
    assert rec.ack_due() and not rec.ack_due()
    t[0] = 14.5
    assert rec.ack_due()


def test_recovery_asks_again_a_node_whose_answer_never_comes():
    t = [0.0]
    calls = iter(["first", "second"])
    rec = Recovery(3.0, hello=lambda n: next(calls), finished=lambda c: set(), answered=lambda c: True, retry_s=30.0, clock=lambda: t[0])
    rec.ask(["d0"])
    t[0] = 20.0
    rec.ask(["d0"])  # still waiting, within retry_s: not asked twice
    assert list(rec.asked) == ["first"]
    t[0] = 31.0
    rec.ask(["d0"])  # the first call hangs: asked again
    assert list(rec.asked) == ["second"] and rec.back() == []


def test_conditions_clock_announces_one_start_again_and_again():
    t = iter([5.0, 6.0, 7.5, 8.0, 9.6])
    clock = ConditionsClock(True, every_s=2.0, clock=lambda: next(t))
    assert [clock.tick() for _ in range(5)] == [5.0, None, 5.0, None, 5.0]


class _Load:
    version = 4

    def __init__(self, outcomes):
        self.outcomes = list(outcomes)

    def check(self):
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def test_switcher_fails_a_switch_cleanly_and_takes_the_next():
    s = Switcher()
    handle = s.begin(lambda: _Load([None, SwitchError("edge-0 could not load its stage")]))
    with pytest.raises(SwitchError, match="still in progress"):
        s.begin(lambda: _Load([]))
    with pytest.raises(SwitchError, match="edge-0 could not load"):
        handle.wait(s.step)
    assert handle.done and handle.result is None and not s.switching
    with pytest.raises(SwitchError, match="other tiers"):
        s.begin(lambda: (_ for _ in ()).throw(SwitchError("the new plan is for other tiers")))  # refused at once
    assert s.last is None and not s.switching  # the failed switch before it is not shown as the last
    second = s.begin(lambda: _Load([{"version": 4}]))
    assert second.wait(s.step) == {"version": 4} and s.last is second


class _Adapter:
    def __init__(self):
        self.attached, self.steps, self.step_s = None, [], 0.0

    def attach(self, view, now):
        self.attached = view

    def step(self, view, counters):
        self.steps.append(counters)


def test_observer_records_every_result_and_adapts_once_a_second_when_counters_come():
    t = [100.0]
    adapter = _Adapter()
    obs = Observer(adapter, clock=lambda: t[0])
    answers = iter([None, [{"node": "d0"}]])
    obs.observe("view", [], 0, lambda: next(answers))  # a node restarting: no round
    assert adapter.attached == "view" and adapter.steps == []
    t[0] = 100.5
    obs.observe("view", [], 0, lambda: pytest.fail("too soon for another round"))
    t[0] = 101.2
    obs.observe("view", [], 0, lambda: next(answers))
    assert adapter.steps == [[{"node": "d0"}]] and obs.wall_s == pytest.approx(1.2)


def test_the_view_reads_the_parts_and_writes_nothing():
    class Pipe:  # the parts a pipeline hands its view
        topology = model = None
        emulate, tier_of, stream_nodes = True, {"d0": 0}, ["d0"]
        book, ledger, admission = PlanBook("p0"), Ledger(), Admission(lambda s: "block", 2, 2)
        switcher, observer, deployment = Switcher(), Observer(), type("D", (), {"stages": {"d0": "handle"}})()
        switch = route = None

    pipe = Pipe()
    view = DriverView(pipe)
    pipe.ledger.admit(0, "d0", b"")
    pipe.ledger.deliver(0, 0)
    pipe.book.adopt(1, "p1")
    assert (view.delivered, view.admitted, view.version, view.plan, view.stages) == (1, 1, 1, "p1", {"d0": "handle"})
    view.plans[7] = "not a plan"  # a copy: the view cannot change the book
    assert 7 not in pipe.book.plans
    with pytest.raises(AttributeError):
        view.version = 0
