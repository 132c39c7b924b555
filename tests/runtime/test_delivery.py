"""The driver's delivery bookkeeping without Ray: numbering, duplicates, sink restarts, re-feeding."""

from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.delivery import Ledger


def test_numbers_each_source_from_zero_and_holds_until_delivered():
    led = Ledger()
    assert [led.admit(0, "device-0", b"a"), led.admit(1, "device-1", b"b"), led.admit(0, "device-0", b"c")] == [0, 0, 1]
    assert led.in_flight(0) == 2 and led.in_flight(1) == 1
    assert led.deliver(0, 0) and led.in_flight(0) == 1
    assert led.refeed() == {"device-0": [b"c"], "device-1": [b"b"]}  # what a dead device may have lost


def test_duplicates_are_refused_and_counted():
    led = Ledger()
    for seq in range(3):
        led.admit(0, "device-0", seq)
    assert [led.deliver(0, s) for s in (0, 1, 1, 0, 2, 2)] == [True, True, False, False, True, False]
    assert led.duplicates == 3 and led.total == 3 and led.watermarks() == {0: 2} and not led.held


def test_a_result_ahead_of_the_watermark_is_kept_once_and_the_watermark_waits():
    led = Ledger()
    for seq in range(3):
        led.admit(0, "device-0", seq)
    assert led.deliver(0, 2) and not led.deliver(0, 2)
    assert led.watermarks() == {0: -1}  # 0 and 1 are still missing
    assert led.deliver(0, 0) and led.deliver(0, 1)
    assert led.watermarks() == {0: 2} and led.in_flight(0) == 0


def test_sink_restart_is_noticed_once_per_new_incarnation():
    led = Ledger()
    assert not led.sink_restarted("edge-0", "a")
    assert not led.sink_restarted("edge-0", "a")
    assert led.sink_restarted("edge-0", "b")
    assert not led.sink_restarted("edge-0", "b")


def test_refeed_keeps_admission_order_per_node():
    led = Ledger()
    for seq in range(5):
        led.admit(seq % 2, f"device-{seq % 2}", f"f{seq}")
    led.deliver(0, 0)
    assert led.refeed() == {"device-1": ["f1", "f3"], "device-0": ["f2", "f4"]}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 9)), max_size=60))
def test_any_arrival_order_delivers_each_frame_exactly_once(arrivals):
    """Results arrive in any order, repeated any number of times: each (source, seq) is accepted once."""
    led = Ledger()
    for src in range(3):
        for _ in range(10):
            led.admit(src, f"device-{src}", None)
    accepted = [(s, q) for s, q in arrivals if led.deliver(s, q)]
    assert len(accepted) == len(set(accepted)) == len(set(arrivals))
    assert led.duplicates == len(arrivals) - len(accepted)
    for src in range(3):
        got = {q for s, q in accepted if s == src}
        mark = led.watermarks().get(src, -1)
        assert set(range(mark + 1)) <= got and (mark + 1) not in got  # the watermark is the gap-free prefix
        assert led.in_flight(src) == 10 - len(got)
