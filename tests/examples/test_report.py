"""SUMO's per-vehicle figures as the report reads them, and the sentences it writes."""

import pytest

from examples.smart_city.report import traffic_summary, verdict
from examples.smart_city.sim import tripinfo_metrics

# one arrived vehicle, one still in the network at the end, one that never got in (entry blocked for 40 s)
TRIPINFO = """<tripinfos>
    <tripinfo id="a" depart="10.00" departDelay="2.00" arrival="70.00" duration="60.00" waitingTime="12.00" timeLoss="20.00" vaporized=""/>
    <tripinfo id="b" depart="50.00" departDelay="0.00" arrival="-1.00" duration="50.00" waitingTime="30.00" timeLoss="40.00" vaporized=""/>
    <tripinfo id="c" depart="-1" departDelay="40.00" arrival="-1.00" duration="0.00" waitingTime="0.00" timeLoss="0.00" vaporized="end"/>
</tripinfos>
"""


def test_tripinfo_counts_arrived_unfinished_and_never_inserted_apart(tmp_path):
    path = tmp_path / "tripinfo.xml"
    path.write_text(TRIPINFO)
    m = tripinfo_metrics(path)
    assert (m["vehicles"], m["arrived"], m["unfinished"], m["never_inserted"]) == (2, 1, 1, 1)
    assert m["mean_delay_s"] == 30.0  # (20 + 40) / 2: vehicles that entered
    assert m["mean_waiting_s"] == 21.0 and m["mean_trip_s"] == 60.0
    assert m["mean_total_delay_s"] == pytest.approx((22 + 40 + 40) / 3)  # entry waits count, for every vehicle due


def runs(**delays):
    """Three seeds per controller, delays given as (mean, +- offset) to make a known spread."""
    return {
        c: [
            {
                "mean_delay_s": d + o,
                "mean_waiting_s": 1,
                "mean_trip_s": 1,
                "mean_total_delay_s": 1,
                "arrived": 1,
                "unfinished": 0,
                "never_inserted": 0,
                "teleports": 0,
                "phase_switches": 3,
                "vehicles": 10,
            }
            for o in (-spread, 0, spread)
        ]
        for c, (d, spread) in delays.items()
    }


def test_the_summary_has_mean_and_spread_over_seeds_per_controller():
    t = traffic_summary(runs(fixed_time=(40, 2), camera=(20, 1)))
    assert t["mean_delay_s"] == {"fixed_time": 40, "camera": 20}
    assert t["mean_delay_s_std"] == {"fixed_time": 2.0, "camera": 1.0}  # sample std of (d-s, d, d+s) is s


def test_the_verdict_says_who_wins_by_how_much_and_when_it_is_noise():
    t = traffic_summary(runs(fixed_time=(40, 1), actuated=(19, 0.5), max_pressure_truth=(20, 0.5), camera=(21, 0.5)))
    lines = verdict(t, "max_pressure")
    assert lines[0].startswith(
        "Camera-driven max-pressure: mean delay 21.0 s per vehicle (spread 0.5 s over 3 seeds), "
        "5.0% above max-pressure on exact queues (20.0 s): within the 10% target."
    )
    assert lines[1] == "It beats fixed time (the network's program) (40.0 s) by 48%."
    assert lines[2] == "It loses to actuated (SUMO) (19.0 s): 11% more delay per vehicle."
    t = traffic_summary(runs(fixed_time=(21.05, 3), actuated=(30, 0.5), max_pressure_truth=(17, 0.5), camera=(21, 0.5)))
    lines = verdict(t, "max_pressure")
    assert "misses the 10% target" in lines[0] and lines[1] == "It ties with fixed time (the network's program) (21.1 s)."
    t = traffic_summary(runs(fixed_time=(22, 3), actuated=(30, 0.5), max_pressure_truth=(21, 0.5), camera=(21, 0.5)))
    assert verdict(t, "max_pressure")[1] == (
        "It beats fixed time (the network's program) (22.0 s) by 5%, within the seeds' spread (±3.0 s)."
    )


def test_a_realtime_run_is_held_to_the_cameras_rate_in_its_targets():
    from examples.smart_city.report import _targets

    def report(fps, realtime):
        return {
            "pipeline": {"fps": fps, "latency_ms": {"p99": 60.0}, "uplink_saving_vs_raw": 0.75},
            "traffic": {"mean_delay_s": {"camera": 14.4, "greedy_truth": 14.3}},
            "time": {"realtime": realtime, "frames_per_simulated_s": 160.0},  # 16 cameras x 10 frames/s
        }

    rows = {t["target"]: t for t in _targets(report(159.9, True), "greedy")}
    kept = rows["frames/s delivered vs the cameras' rate (realtime)"]
    assert kept["met"] and kept["value"] == 0.999
    behind = {t["target"]: t for t in _targets(report(120.0, True), "greedy")}["frames/s delivered vs the cameras' rate (realtime)"]
    assert not behind["met"] and "could not keep up" in behind["why"]
    assert not any("realtime" in t["target"] for t in _targets(report(20.0, False), "greedy"))  # simulated time waits
