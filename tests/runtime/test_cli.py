"""The `tierpipe` command as a user runs it: partition, profile, topology check, demo."""

import json
import re

import pytest

from partition import Plan
from partition.errors import PlanError
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
    assert (
        main(
            [
                "partition",
                "resnet18",
                "--topology",
                "three_tier",
                "--objective",
                "throughput",
                "--keep-input-on",
                "device",
                "--pin",
                "layer4=edge",
                "--out",
                str(out),
            ]
        )
        == 0
    )
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
def test_run_streams_a_zoo_model_end_to_end(ray_local, tmp_path, capsys):
    report = tmp_path / "report.json"
    assert main(["run", "resnet18", "--topology", "local", "--seconds", "2", "--emulate", "on", "--report", str(report)]) == 0
    # offered against delivered, drops as a share, the predicted and the measured bottleneck, in one line
    line = " ".join(capsys.readouterr().out.split())
    assert re.search(r"offered 20\.0 frames/s \(2 streams x 10 fps\), delivered [\d.]+ \(\d+%\); nothing dropped;", line), line
    assert "predicted capacity" in line and re.search(r"measured bottleneck (tier|link) \S+", line), line
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
    with pytest.raises(PlanError):
        main(["--debug", "run", "resnet18", "--plan", str(bad)])  # --debug: the traceback


@pytest.mark.parametrize(
    "argv, says",
    [
        (["partition", "resnet18", "--input-shape", "abc"], "--input-shape: 'abc' is not a shape"),
        (["partition", "resnet18", "--input-shape", "1,-3,2,2"], "every dimension must be a whole number >= 1"),
        (["partition", "resnet18", "--slo-ms", "nan"], "--slo-ms: 'nan': give a number > 0"),
        (["partition", "resnet18", "--time-budget-s", "-1"], "--time-budget-s: '-1': give a number > 0"),
        (["profile", "resnet18", "--depth", "-1"], "--depth: '-1': give a whole number from 0 up"),
        (["run", "resnet18", "--max-batch", "0"], "--max-batch: '0'"),
        (["run", "resnet18", "--seconds", "inf"], "--seconds: 'inf'"),
        (["cluster", "local", "x.yaml", "--port", "99999"], "from 1 to 65535"),
        (["demo", "--lag", "-2"], "--lag: '-2'"),
        (["demo", "--control-step", "0"], "--control-step: '0'"),
        (["nosuchcommand"], "invalid choice: 'nosuchcommand'"),
        (["partition"], "required: model"),
        (["partition", "tests.models:Chain", "--input-shape", "1,3"], "the model fails on its example inputs [(1, 3)]"),
        (["partition", "json:loads"], "'json:loads' takes arguments (s)"),
    ],
)
def test_every_bad_argument_is_one_line_without_a_traceback(argv, says, capsys):
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's errors
        code = exit_.code
    assert code == 2
    captured = capsys.readouterr()
    text = (captured.out + captured.err).strip()
    assert says in " ".join(text.split()), text
    assert "Traceback" not in text and text.startswith("error:")
    assert len(text.splitlines()) <= 3  # one line (the console may wrap it)
