"""The `tierpipe` command as a user runs it: partition, profile, topology check, demo."""

import json

import pytest

from partition import Plan
from runtime.cli import main


def test_topology_check_ok_and_bad(tmp_path, capsys):
    assert main(["topology", "check", "smart_city"]) == 0
    assert "16 input streams" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiers:\n  - {name: device, speed: -1}\n")
    assert main(["topology", "check", str(bad)]) == 2
    out = capsys.readouterr().out
    assert "bad.yaml" in out and "tiers[0].speed" in out


def test_partition_writes_a_plan(tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert main(["partition", "resnet18", "--topology", "three_tier", "--objective", "throughput",
                 "--keep-input-on", "device", "--pin", "layer4=edge", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "neurosurgeon" in text and "what crosses each link" in text
    plan = Plan.load(out)
    assert plan.objective == "throughput" and plan.assignment["fc"] == "edge"
    assert all(c.name != "x" for link in plan.links for c in link.tensors)


def test_partition_bad_pin_is_a_clear_error(capsys):
    assert main(["partition", "resnet18", "--topology", "three_tier", "--pin", "layer9"]) == 2
    assert "MODULE=TIER" in capsys.readouterr().out


def test_profile_table(capsys):
    assert main(["profile", "unet", "--topology", "three_tier", "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert "dec" in out and "edge ms" in out and "total" in out


@pytest.mark.ray_local
def test_run_streams_a_zoo_model_end_to_end(ray_local, tmp_path):
    report = tmp_path / "report.json"
    assert main(["run", "resnet18", "--topology", "local", "--seconds", "2", "--emulate", "on",
                 "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["emulated"] and data["frames_delivered"] == data["sent_by_sources"] > 0
    assert data["topology"] == "local" and len(data["tiers"]) == 3


def test_demo_is_the_smart_city_example():
    from runtime.cli import build_parser

    args = build_parser().parse_args(["demo", "--quick", "--out", "x"])
    assert args.quick and args.out == "x" and args.func.__module__ == "examples.smart_city.demo"


def test_bad_codec_and_bad_plan_file_are_one_line_errors(capsys, tmp_path):
    assert main(["partition", "resnet18", "--topology", "three_tier", "--codec", "int9"]) == 2
    out = capsys.readouterr().out
    assert "unknown codec 'int9'" in out and "int8-channel" in out and "Traceback" not in out
    bad = tmp_path / "plan.json"
    bad.write_text('{"model": "resnet18"}')
    assert main(["run", "resnet18", "--plan", str(bad), "--topology", "local"]) == 2
    out = capsys.readouterr().out
    assert f"plan {bad}: field" in out and "is missing" in out and "Traceback" not in out
    bad.write_text("not json")
    assert main(["run", "resnet18", "--plan", str(bad)]) == 2
    assert "cannot be read" in capsys.readouterr().out
    with pytest.raises(Exception):
        main(["--debug", "run", "resnet18", "--plan", str(bad)])          # --debug: the traceback
