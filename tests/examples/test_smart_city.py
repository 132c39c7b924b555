"""The smart-city example: cameras, the trained model, SUMO runs under every controller, the loop's clocks,
and the demo end to end on a network nobody here made."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from examples.smart_city import camera
from examples.smart_city.model import load_model
from examples.smart_city.scenario import Scenario
from examples.smart_city.sim import BASELINES, SimOptions, simulate
from examples.smart_city.simproc import run_in_process

DATA = Path(__file__).resolve().parent.parent / "data"
SINGLE = DATA / "sumo_rl" / "2way-single-intersection" / "2way-single-intersection.sumocfg"


def queue(lane: int, count: int, first_m: float = 1.0, length_m: float = 4.6):
    """``count`` halted cars queued back from the stop line on ``lane`` (2.5 m gaps)."""
    return [(lane, first_m + i * (length_m + 2.5), length_m, 0.0, f"q{lane}.{i}") for i in range(count)]


@pytest.mark.parametrize("lanes", [1, 3, 5])
def test_a_frame_shows_each_vehicle_in_its_own_lane_and_nothing_beyond_the_view(lanes):
    widths = (3.2,) * lanes
    cols = camera.lane_columns(widths)
    cars = queue(lanes - 1, 2) + [(0, 150.0, 4.6, 0.0, "far")]  # 150 m up the road: out of view
    a = camera.render(cars, widths, 1.0, np.random.default_rng(0))
    assert a.shape == (3, camera.H, camera.W) and a.dtype == np.uint8
    assert np.array_equal(a, camera.render(cars, widths, 1.0, np.random.default_rng(0)))  # reproducible
    empty = camera.render([], widths, 1.0, np.random.default_rng(0))
    diff = np.abs(a.astype(int) - empty.astype(int)).sum(axis=0)
    first, end = cols[lanes - 1]
    # two cars from 1 m: rows 1..16 of the leftmost lane change; no other lane does, and the far car is not drawn
    assert diff[1:15, first:end].sum() > 0 and diff[30:, :].sum() == 0
    others = [c for k, c in enumerate(cols) if k != lanes - 1]
    assert all(diff[:, f:e].sum() == 0 for f, e in others)
    assert [e - f for f, e in cols] == [4] * lanes and cols[0][1] == camera.RIGHT_KERB_PX


@pytest.mark.parametrize("counts", [(3,), (0, 4), (2, 0, 5), (1, 6, 0, 3), (4, 0, 2, 0, 6)])
def test_the_trained_model_counts_halted_cars_on_1_to_5_lanes(counts):
    model, _ = load_model()
    lanes = len(counts)
    cars = [c for lane, n in enumerate(counts) for c in queue(lane, n)] + [(0, 60.0, 4.6, 12.0, "moving")]
    frame = torch.from_numpy(camera.render(cars, (3.2,) * lanes, 0.8, np.random.default_rng(1))[None])
    with torch.inference_mode():
        est = model(frame)[0].numpy()[:lanes]
    assert np.abs(est - np.array(counts)).max() < 0.8, est  # the moving car on lane 0 is not counted


def test_every_baseline_runs_reproducibly_and_control_changes_the_traffic():
    sc = Scenario.load(SINGLE, end_s=300)
    runs = [run_in_process(simulate, sc, 5, m, SimOptions()) for m in BASELINES]
    out = {m: r.get() for m, r in zip(BASELINES, runs)}
    again = run_in_process(simulate, sc, 5, "fixed_time", SimOptions()).get()
    assert out["fixed_time"] == again  # same seed, same traffic
    for m, r in out.items():
        assert r["vehicles"] > 100 and r["arrived"] + r["unfinished"] == r["vehicles"] and r["arrived"] > r["unfinished"], m
        assert r["mean_total_delay_s"] >= r["mean_delay_s"] > 0 and r["teleports"] == 0, m
        assert r["phase_switches"] > 0, m  # every controller changed the light
    delays = {m: r["mean_delay_s"] for m, r in out.items()}
    assert len(set(delays.values())) == len(delays)  # four controllers, four outcomes
    assert delays["max_pressure_truth"] < delays["fixed_time"]  # queue-aware beats fixed at this demand


@pytest.mark.ray_local
def test_quick_demo_on_a_network_not_made_here_end_to_end(ray_local, tmp_path):
    from runtime.cli import main

    # the command a user types: --quick on a scenario is one seed of its first 240 s; --end makes it 120 s;
    # --exits runs the cameras a second time with the camera exit
    assert main(["demo", "--quick", "--scenario", str(SINGLE), "--end", "120", "--exits", "--out", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["seeds"] == [1] and saved["time"]["camera_fps"] == 1.0
    s, p, t = saved["scenario"], saved["pipeline"], saved["traffic"]
    assert (s["name"], s["junctions"], s["cameras"], s["lanes_per_camera"]) == ("2way-single-intersection", 1, 4, [2] * 4)
    assert (s["begin_s"], s["end_s"]) == (0.0, 120.0)
    # a frame per camera per simulated second from 1 s to 119 s, each delivered once and in order
    assert p["frames_sent"] == p["frames_delivered"] == 4 * 119 and p["delivered_per_camera"] == [119] * 4
    assert p["delivered_exactly_once_in_order"]
    for key in ("mean_delay_s", "mean_waiting_s", "mean_trip_s", "arrived", "unfinished"):
        assert set(t[key]) == set(t[key + "_std"]) == {*BASELINES, "camera"}, key
    assert t["phase_switches"]["camera"] > 0  # the estimates moved the lights
    assert saved["camera_controller"] in ("max_pressure", "greedy")
    assert saved["model"]["mae_live"] < 1.0 and saved["model"]["mae_heldout"] < 1.0
    assert saved["plan"]["stages"]["device"] and saved["plan"]["stages"]["edge"]  # the model really is split
    assert p["uplink_bytes_per_frame"] < 0.3 * p["raw_bytes_per_frame"]  # the split sends far less than a frame
    topo = (tmp_path / "topology.yaml").read_text()
    assert "gateway-0:\n  - device-0\n  - device-1\n  - device-2\n  - device-3" in topo
    assert {"delay.png", "queues.png", "cameras.png"} <= set(saved["plots"])
    assert any("on exact queues" in line for line in saved["verdict"])
    # the run with the camera exit: every frame once and in order, answered on the camera or by the full model,
    # its budget and calibrated error said, and the uplink and traffic figures beside those of the run without
    e = saved["exits"]
    assert e["delivered_exactly_once_in_order"] and set(e["rate_by_tier"]) == {"device", "gateway", "edge"}
    assert sum(e["rate_by_tier"].values()) == pytest.approx(1.0) and e["rate_by_tier"]["gateway"] == 0.0
    assert e["agreement"]["kind"] == "error" and e["agreement"]["calibrated_held_out"] <= e["agreement"]["bound"] == 0.05
    assert (e["rate_by_tier"]["device"] > 0) == bool(e["live"])
    if e["live"]:
        assert e["uplink_bytes_per_frame"] < e["uplink_bytes_per_frame_without"]
    assert e["mean_delay_s_camera_without"] == t["mean_delay_s"]["camera"] and e["mae_live"] is not None
    shadow = e["agreement"]["shadow"]  # the full model beside the pipeline on a tenth of the live frames
    assert shadow["share"] == 0.1 and 0 < shadow["frames"] < e["frames_checked"] and shadow["error"] >= 0.0


def test_demo_flags_reach_the_run_and_a_bad_scenario_is_one_line(monkeypatch, tmp_path, capsys):
    from examples.smart_city import demo_run
    from runtime.cli import main

    calls = []
    monkeypatch.setattr(demo_run, "run_demo", lambda out, scenario, config: calls.append((scenario, config)))
    assert main(["demo", "--quick"]) == 0
    sc, cfg = calls[-1]
    assert sc.name == "midtown" and (sc.begin_s, sc.end_s) == (0.0, 240.0) and cfg.seeds == (1,)
    assert (
        main(
            [
                "demo",
                "--scenario",
                str(SINGLE),
                "--begin",
                "100",
                "--end",
                "700",
                "--camera-fps",
                "2",
                "--control-step",
                "10",
                "--adapt",
                "--controller",
                "greedy",
            ]
        )
        == 0
    )
    sc, cfg = calls[-1]
    assert (sc.begin_s, sc.end_s, cfg.camera_fps, cfg.control_step_s, cfg.adapt, cfg.controller) == (
        100.0,
        700.0,
        2.0,
        10.0,
        True,
        "greedy",
    )
    assert main(["demo"]) == 0 and calls[-1][0].end_s == 1200.0 and calls[-1][1].seeds == (1, 2, 3)
    assert calls[-1][1].camera_fps == 0.2
    assert main(["demo", "--camera-fps", "0.5"]) == 2  # 2.5 frames per 5 s decision
    monkeypatch.undo()
    assert main(["demo", "--scenario", str(SINGLE), "--tls", "nope", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().out
    assert "single-intersection.net.xml" in err and "'nope'" in err and "Traceback" not in err
    assert main(["demo", "--net", str(tmp_path / "missing.net.xml"), "--routes", "r.xml"]) == 2
    assert "missing.net.xml: no such network file" in capsys.readouterr().out


def test_a_bad_conditions_file_is_one_line_naming_the_node_and_the_valid_ones(tmp_path, capsys):
    from runtime.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("- {at: 2 s, node: camera-99, bandwidth: 1 Mbit/s}\n")
    assert main(["demo", "--scenario", str(SINGLE), "--conditions", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().out
    assert "bad.yaml" in err and "camera-99" in err and "device-0" in err and "Traceback" not in err
    assert (tmp_path / "out" / "topology.yaml").exists()  # the generated topology the names refer to


def test_the_adapt_demo_drops_the_wifi_of_the_first_junctions_cameras_whatever_the_scenario(tmp_path):
    from examples.smart_city.demo_run import wifi_drop
    from partition import Topology
    from partition.conditions import load_conditions

    sc = Scenario.load(DATA / "sumo_rl" / "4x4-Lucas" / "4x4-Lucas.sumocfg", tls=["3", "7"])
    data = sc.topology()
    conditions = load_conditions(wifi_drop(data, tmp_path / "drop.yaml"), Topology.from_dict(data))
    drops = [(c.at_s, c.node, c.bandwidth_mbps) for c in conditions if c.node]
    assert drops == [(10.0, "device-0", 0.05), (10.0, "device-1", 0.05)]  # light "3": its two cameras
    assert [(c.at_s, c.link, c.bandwidth_mbps) for c in conditions if c.link] == [(40.0, "device->gateway", 20.0)]
