"""The phase-generic controllers as plain classes: minimum and maximum green, yellow and all-red order,
max-pressure and greedy choices on hand-computed queues."""

import pytest

from examples.smart_city.controller import Greedy, MaxPressure, SignalProgram

# a T junction: link k goes from links[k][0] to links[k][1]
#   phase 0 "GGrrr": north straight (n_0 -> s_0) and north right (n_0 -> w_0)
#   phase 1 "rrGGr": east straight (e_0 -> w_0) and east left (e_1 -> s_0)
#   phase 2 "rrrrG": the side road (x_0 -> s_0)
PROGRAM = SignalProgram(
    "J",
    greens=("GGrrr", "rrGGr", "rrrrG"),
    links=(("n_0", "s_0"), ("n_0", "w_0"), ("e_0", "w_0"), ("e_1", "s_0"), ("x_0", "s_0")),
    yellow_s=3.0,
    all_red_s=2.0,
)


def run(controller, queues, until_s, step_s=1.0):
    """The states at every step from 0 to ``until_s``, deciding every step (the controller's own grid applies)."""
    return {t: controller.update(float(t), queues) for t in range(0, int(until_s) + 1, int(step_s))}


def test_green_is_held_for_min_green_then_yellow_then_all_red_then_the_new_green():
    c = MaxPressure(PROGRAM, min_green_s=10, max_green_s=60, control_step_s=5)
    states = run(c, {"e_0": 6.0}, 20)
    # decisions at 0, 5, 10, ...: not before 10 s of green; yellow 10-12, all-red 13-14, green from 15
    assert all(states[t] == "GGrrr" for t in range(0, 10))
    assert [states[t] for t in (10, 11, 12)] == ["yyrrr"] * 3
    assert [states[t] for t in (13, 14)] == ["rrrrr", "rrrrr"]
    assert states[15] == "rrGGr" and c.switches == 1 and c.phase == 1


def test_links_green_in_both_phases_stay_green_through_the_change():
    p = SignalProgram("K", greens=("GGr", "GrG"), links=(("a_0", "o_0"), ("a_1", "o_1"), ("b_0", "o_0")), yellow_s=2.0, all_red_s=1.0)
    assert p.yellow(0, 1) == "Gyr" and p.all_red(0, 1) == "Grr"
    c = Greedy(p, min_green_s=0, control_step_s=1)
    assert [c.update(t, {"b_0": 3.0}) for t in (0.0, 2.0, 3.0)] == ["Gyr", "Grr", "GrG"]


def test_max_pressure_picks_the_phase_with_the_largest_pressure_not_the_longest_queue():
    # pressures: phase 0 = (n_0 - s_0) + (n_0 - w_0) = (5 - 4) + (5 - 3) = 3
    #            phase 1 = (e_0 - w_0) + (e_1 - s_0) = (2 - 3) + (6 - 4) = 1
    #            phase 2 = (x_0 - s_0)              = 8 - 4          = 4   <- the largest
    queues = {"n_0": 5, "s_0": 4, "w_0": 3, "e_0": 2, "e_1": 6, "x_0": 8}
    mp = MaxPressure(PROGRAM)
    assert [mp.score(i, queues) for i in range(3)] == [3, 1, 4] and mp.best(queues) == (2, 4)
    # greedy: phase 0 serves n_0 (5, counted once), phase 1 e_0 + e_1 = 8, phase 2 x_0 = 8: a tie, the lower index wins
    g = Greedy(PROGRAM)
    assert [g.score(i, queues) for i in range(3)] == [5, 8, 8] and g.best(queues) == (1, 8)


def test_a_tie_with_the_current_green_keeps_it():
    c = Greedy(PROGRAM, min_green_s=0, control_step_s=1)
    assert c.update(0.0, {"n_0": 4, "x_0": 4}) == "GGrrr" and c.stage == "green"


def test_max_green_hands_over_to_the_best_other_phase_with_anyone_waiting():
    c = MaxPressure(PROGRAM, min_green_s=5, max_green_s=20, control_step_s=5)
    heavy_here = {"n_0": 30, "e_1": 1}  # phase 0 keeps winning on pressure
    assert all(c.update(float(t), heavy_here) == "GGrrr" for t in range(0, 20))
    assert c.update(20.0, heavy_here) == "yyrrr" and c.next_phase == 1  # e_1 waits: phase 1 at max green
    c2 = MaxPressure(PROGRAM, min_green_s=5, max_green_s=20, control_step_s=5)
    alone = {"n_0": 30}  # nobody else waits: green stays
    assert all(c2.update(float(t), alone) == "GGrrr" for t in range(0, 40))


def test_no_decision_between_control_steps_or_when_told_not_to():
    c = MaxPressure(PROGRAM, min_green_s=0, control_step_s=5)
    assert c.update(0.0, {}) == "GGrrr"  # decided at 0: nothing waits
    assert c.update(3.0, {"x_0": 9}) == "GGrrr"  # 3 s after the last decision: too early
    assert c.update(5.0, {"x_0": 9}, decide=False) == "GGrrr"
    assert c.update(6.0, {"x_0": 9}) == "yyrrr"


def test_a_program_must_match_its_links():
    with pytest.raises(ValueError, match="has 3 links, the light controls 2"):
        SignalProgram("Z", greens=("GGr",), links=(("a", "b"), ("c", "d")))
    with pytest.raises(ValueError, match="no green phase"):
        SignalProgram("Z", greens=(), links=())
