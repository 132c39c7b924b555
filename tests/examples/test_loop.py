"""The loop's clocks and its delivery bookkeeping, without SUMO or Ray."""

import numpy as np
import pytest
import torch

from examples.smart_city.loop import FrameBook, check_rates, frame_times, needed_frame
from examples.smart_city.sim import SimOptions, decision_due, decision_times
from partition.errors import TierpipeError
from runtime.errors import PipelineError


def test_frames_come_lag_before_each_decision_on_the_step_grid():
    # 1 fps, decisions every 5 s, 1 s lag: a frame every second, the one at 4 s feeds the decision at 5 s
    assert frame_times(0.0, 8.0, 1.0, 5.0, 1.0).tolist() == [1, 2, 3, 4, 5, 6, 7]
    # 0.4 fps: 2 frames per decision, 2.5 s apart, the second at G - 1: 1.5 and 4 -> 1.5 moves to SUMO's step at 2
    assert frame_times(0.0, 15.0, 0.4, 5.0, 1.0).tolist() == [2, 4, 7, 9, 12, 14]
    # one frame per decision (0.2 fps), 2 s lag, from a window that starts at 100 s
    assert frame_times(100.0, 116.0, 0.2, 5.0, 2.0).tolist() == [103, 108, 113]


def test_simulated_time_waits_only_for_the_frames_a_decision_needs():
    t = frame_times(0.0, 15.0, 0.4, 5.0, 1.0)  # [2, 4, 7, 9, 12, 14]
    opts = SimOptions(control_step_s=5.0, lag_s=1.0)
    assert needed_frame(t, 2.0, 0.0, opts) == -1  # only the decision at 0 s: no frame before it
    assert needed_frame(t, 7.0, 0.0, opts) == 1  # passing 5 s needs the frame at 4 s (index 1)
    assert needed_frame(t, 9.0, 0.0, opts) == 1  # nothing new between 7 and 9 s
    assert needed_frame(t, 12.0, 0.0, opts) == 3  # passing 10 s needs the frame at 9 s


def test_rates_that_do_not_fit_the_decisions_are_refused_naming_the_flags():
    check_rates(0.4, 5.0, 1.0)
    with pytest.raises(TierpipeError, match=r"--camera-fps 0.5 with --control-step 5 gives 2.5 frames per decision.*0.2, 0.4"):
        check_rates(0.5, 5.0, 1.0)
    with pytest.raises(TierpipeError, match="--camera-fps 0.1 .* gives 0.5 frames"):
        check_rates(0.1, 5.0, 1.0)
    with pytest.raises(TierpipeError, match="--lag -1: a decision cannot use a frame from its future"):
        check_rates(1.0, 5.0, -1.0)


def test_decisions_fall_on_the_first_step_at_or_after_each_grid_time_whatever_the_step_length():
    for step_s, expected in ((1.0, [0, 5, 10, 15]), (0.3, [0.0, 5.1, 10.2, 15.0]), (2.0, [0, 6, 10, 16]), (7.0, [0, 7, 14])):
        nxt, taken, t = 0.0, [], 0.0
        while t < 17:
            grid, nxt = decision_due(nxt, t, 5.0)
            if grid is not None:
                taken.append(round(t, 1))
            t = round(t + step_s, 6)
        assert taken == expected, step_s  # a 7 s step skips the grid times it jumps over
    assert decision_times(0.0, 12.0, 5.0).tolist() == [0, 5, 10]


def result(out):
    return torch.tensor([out], dtype=torch.float32)


def test_the_book_numbers_results_masks_absent_lanes_and_completes_frame_sets():
    visible = np.array([[2, 0, 0, 0, 0], [1, 3, 0, 0, 0]], dtype=np.float32)
    book = FrameBook(cameras=2, lanes=[1, 2], base_seq={0: 7, 1: 0}, trace_cameras=[0])
    book.sent(0, 4.0, frames="f0", visible=visible, whole=visible)
    book.sent(1, 9.0, frames="f1", visible=visible, whole=visible)
    assert book.take(0, 7, result([2.5, 9, 9, 9, 9])) == (0, pytest.approx(np.array([2.5, 0, 0, 0, 0])))
    assert not book.through(0) and book.missing(1) == [(0, 8), (1, 0)]
    k, est = book.take(1, 0, result([1.0, -1.0, 4, 4, 4]))  # negative estimates clip to 0
    assert k == 0 and est.tolist() == [1, 0, 0, 0, 0] and book.through(0)
    assert [c["k"] for c in book.complete] == [0] and book.complete[0]["t_s"] == 4.0
    # |2.5 - 2| on camera 0's one lane, |1 - 1| + |0 - 3| on camera 1's two: 3.5 over 3 lanes
    assert book.err_sum == pytest.approx(3.5) and book.err_lanes == 3 and book.order_ok
    book.sent(2, 14.0, frames="f2", visible=visible, whole=visible)
    book.take(1, 2, result([0, 0, 0, 0, 0]))  # seq 1 skipped: out of order
    assert not book.order_ok and book.delivered == [1, 2]


def test_a_result_that_is_not_the_queue_estimates_is_an_error_naming_the_camera():
    book = FrameBook(cameras=1, lanes=[2], base_seq={0: 0})
    book.sent(0, 1.0, None, np.zeros((1, 5)), np.zeros((1, 5)))
    with pytest.raises(PipelineError, match=r"camera 0, frame 0: the model returned dict"):
        book.take(0, 0, {"logits": 1})


def test_the_docstring_examples_run():
    import doctest

    from examples.smart_city import controller, loop

    for module in (controller, loop):
        assert doctest.testmod(module).failed == 0, module.__name__
