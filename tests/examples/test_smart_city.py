"""The smart-city example: cameras, the trained model, the controller, SUMO, and the demo end to end."""

import json

import numpy as np
import pytest
import torch

from examples.smart_city import camera
from examples.smart_city.controller import AxisController
from examples.smart_city.model import load_model
from examples.smart_city.sim import APPROACHES, run_in_process, simulate


def queue(lane: int, count: int, first_m: float = 1.0, length_m: float = 4.6):
    """``count`` halted cars queued back from the stop line on incoming ``lane`` (2.5 m gaps)."""
    return [(True, lane, first_m + i * (length_m + 2.5), length_m, 0.0, f"q{lane}.{i}") for i in range(count)]


def test_a_frame_shows_vehicles_where_they_are_and_is_reproducible():
    cars = queue(0, 2) + [(False, 1, 40.0, 4.6, 12.0, "out")]
    a = camera.render(cars, 1.0, np.random.default_rng(0))
    b = camera.render(cars, 1.0, np.random.default_rng(0))
    assert a.shape == (3, camera.H, camera.W) and a.dtype == np.uint8 and np.array_equal(a, b)
    empty = camera.render([], 1.0, np.random.default_rng(0))
    diff = np.abs(a.astype(int) - empty.astype(int)).sum(axis=0)
    lane0 = slice(camera.IN_LANES[0], camera.IN_LANES[0] + 4)
    # the first car's 4.6 m from 1 m past the stop line: rows 1..7 of incoming lane 0 change, far rows do not
    assert diff[1:7, lane0].sum() > 0 and diff[60:, lane0].sum() == 0
    out1 = slice(camera.OUT_LANES[1], camera.OUT_LANES[1] + 4)
    assert diff[40:50, out1].sum() > 0                     # the outgoing car, about 40 m from the junction


@pytest.mark.parametrize("counts", [(0, 0), (3, 1), (6, 0), (2, 5)])
def test_the_trained_model_counts_halted_cars_per_lane(counts):
    model, _ = load_model()
    cars = queue(0, counts[0]) + queue(1, counts[1]) + [(True, 1, 70.0, 4.6, 13.0, "moving")]
    frame = torch.from_numpy(camera.render(cars, 0.8, np.random.default_rng(1))[None])
    with torch.inference_mode():
        est = model(frame)[0].numpy()
    assert np.abs(est - np.array(counts)).max() < 0.6, est      # a moving car on lane 1 is not counted


def test_longest_queue_first_holds_min_green_then_yellow_then_all_red():
    c = AxisController(min_green_s=8, yellow_s=3, all_red_s=1, margin=1)
    q = {"EW": 0.0, "NS": 5.0}
    states = [(t, c.update(t, q)) for t in np.arange(0, 14, 0.5)]
    phase_at = dict(states)
    assert phase_at[7.5] == ("green", "EW") and phase_at[8.0] == ("yellow", "EW")
    assert phase_at[11.0] == ("red", None) and phase_at[12.0] == ("green", "NS") and c.switches == 1
    assert c.update(30.0, {"EW": 5.5, "NS": 5.0}) == ("green", "NS")      # within the margin: no switch


def test_every_approach_is_one_of_four_per_inner_junction():
    assert len(APPROACHES) == 16 and len({a.incoming for a in APPROACHES}) == 16
    for j in ("A0", "A1", "B0", "B1"):
        mine = [a for a in APPROACHES if a.junction == j]
        assert len(mine) == 4 and sorted(a.axis for a in mine) == ["EW", "EW", "NS", "NS"]
    assert all(a.outgoing == a.incoming[len(a.incoming) - 2:] + a.incoming[: len(a.incoming) - 2] for a in APPROACHES)


def test_sumo_runs_are_reproducible_and_control_changes_the_traffic():
    runs = [run_in_process(simulate, 5, 120.0, c) for c in ("fixed_time", "ground_truth", "fixed_time")]
    fixed, truth, again = [r.get() for r in runs]
    assert fixed == again                                            # same seed, same traffic
    assert fixed["vehicles"] > 50 and truth["phase_switches"] > 0
    assert truth["mean_waiting_s"] != fixed["mean_waiting_s"]


@pytest.mark.ray_local
def test_quick_demo_end_to_end(ray_local, tmp_path):
    from examples.smart_city.demo import run_demo

    # adaptation on, with a condition that changes nothing the plan depends on (no switch is needed; that
    # drops are re-planned is tests/runtime/test_adapt.py's): the wiring, the report and the plot
    conditions = tmp_path / "calm.yaml"
    conditions.write_text("- {at: 2 s, node: device-5, battery: 80 %}\n")
    report = run_demo(tmp_path, seeds=(4,), duration_s=25.0, lag=2,      # seed 4: true-queue control switches 3 times in 25 s
                      conditions=conditions, adapt=True)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["pipeline"]["frames_delivered"] == report["pipeline"]["frames_delivered"]
    p = saved["pipeline"]
    assert p["frames_sent"] == p["frames_delivered"] == 16 * 250           # 16 cameras x 10 frames x 25 s
    assert p["delivered_per_camera"] == [250] * 16 and p["delivered_exactly_once_in_order"]
    assert saved["traffic"]["phase_switches_camera"] > 0                   # the estimates moved the lights
    assert set(saved["traffic"]["mean_waiting_s"]) == {"fixed_time", "actuated", "ground_truth", "camera"}
    for key in ("fps", "latency_ms", "uplink_bytes_per_frame", "raw_bytes_per_frame"):
        assert key in p
    assert saved["model"]["mae"] < 0.2 and list(saved["plan"]["stages"]) == ["device", "gateway", "edge"]
    assert saved["plan"]["stages"]["device"] and saved["plan"]["stages"]["edge"]     # the model really is split
    assert all((tmp_path / name).stat().st_size > 1000 for name in saved["plots"])
    adaptation = saved["adaptation"]
    assert adaptation["adapt"] and adaptation["conditions"] == str(conditions)
    assert adaptation["plan_switches"] == [] and adaptation["plan_version"] == 0
    assert len(adaptation["timeline"]) >= 5 and sum(r["fps"] for r in adaptation["timeline"]) <= 16 * 250
    assert (tmp_path / adaptation["plot"]).stat().st_size > 1000


def test_demo_adapt_uses_the_shipped_wifi_drop_and_a_bad_conditions_file_is_one_line(monkeypatch, tmp_path, capsys):
    from examples.smart_city import demo
    from runtime.cli import main

    calls = []
    monkeypatch.setattr(demo, "run_demo", lambda out, seeds, duration_s, lag, **kw: calls.append(kw))
    assert main(["demo", "--quick", "--adapt"]) == 0
    assert calls[-1] == {"conditions": str(demo.WIFI_DROP), "adapt": True}
    assert main(["demo", "--quick", "--conditions", "mine.yaml"]) == 0
    assert calls[-1] == {"conditions": "mine.yaml", "adapt": False}
    monkeypatch.undo()
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {at: 2 s, node: camera-99, bandwidth: 1 Mbit/s}\n")
    assert main(["demo", "--quick", "--conditions", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().out
    assert "bad.yaml" in err and "camera-99" in err and "device-0" in err and "Traceback" not in err
