"""What a user meets first: a CLI that answers without importing torch or Ray, says its defaults and
version, finds models as ``python -m`` does, names missing extras, keeps solver banners off stdout,
and streams the frames the topology declares."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runtime.cli import main

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "ray", "matplotlib", "libsumo")

# run argv through the CLI in a fresh interpreter and print which heavy modules it imported
_PROBE = textwrap.dedent("""
    import json, sys
    from runtime.cli import main
    try:
        code = main(sys.argv[1:])
    except SystemExit as exit_:
        code = exit_.code
    print(json.dumps({"code": code, "heavy": sorted(m for m in %r if m in sys.modules)}))
""") % (HEAVY,)


def _probe(*argv: str) -> tuple[dict, str]:
    done = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, cwd=ROOT, timeout=120)
    *text, last = done.stdout.strip().splitlines()
    return json.loads(last), "\n".join(text)


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        ["partition", "--help"],
        ["run", "--help"],
        ["profile", "--help"],
        ["demo", "--help"],
        ["cluster", "up", "--help"],
        ["topology", "check", "smart_city"],
    ],
)
def test_answers_without_torch_ray_or_matplotlib(argv):
    result, text = _probe(*argv)
    assert result["code"] == 0, text
    assert result["heavy"] == [], f"`tierpipe {' '.join(argv)}` imported {result['heavy']}"


def test_help_shows_defaults_and_version_names_the_stack(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # argparse wraps at the terminal's width
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "how long the sources stream (default: 10.0)" in text
    assert "--timing {analytic,measured}" in text and "(default: analytic)" in text
    assert "--report REPORT where to write the JSON report (default: tierpipe-run/report.json)" in text
    with pytest.raises(SystemExit):
        main(["--version"])
    from importlib.metadata import version

    line = capsys.readouterr().out
    assert line.startswith(f"tierpipe {version('tierpipe')} (torch {version('torch')}, ray {version('ray')}")


def test_a_model_is_found_from_the_working_directory_as_python_m_does(tmp_path):
    (tmp_path / "mymodel.py").write_text(
        textwrap.dedent("""
        import torch
        def build():
            return torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU()), (torch.randn(1, 8),)
    """)
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "partition", "mymodel:build", "--topology", "three_tier"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "what crosses each link" in done.stdout


def test_a_missing_dependency_is_named_with_its_extra(tmp_path, monkeypatch, capsys):
    from partition import extras

    monkeypatch.setattr(extras, "missing", lambda modules: [m for m in modules if m == "libsumo"])
    assert main(["demo", "--quick"]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert "tierpipe demo needs libsumo, which the 'demo' extra installs: pip install 'tierpipe[demo]'" in out
    # a model whose module needs transformers: the hf extra, not "it must take no arguments"
    (tmp_path / "needs_hf.py").write_text("def build():\n    import transformers\n    return transformers.AutoModel\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ModuleNotFoundError
    assert main(["partition", "needs_hf:build", "--topology", "three_tier"]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert "it needs 'transformers', which is not installed: pip install 'tierpipe[hf]'" in out
    assert main(["partition", "no_such_module_here:build"]) == 2
    assert "no module 'no_such_module_here' (run from the folder that holds it" in " ".join(capsys.readouterr().out.split())


def test_the_highs_banner_stays_off_stdout():
    # HiGHS prints its banner once per process, from C++ on file descriptor 1: each check gets a fresh process
    def stdout_of(code: str) -> str:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60).stdout

    loud = stdout_of("import highspy; highspy.Highs()")
    quiet = stdout_of("from partition.lp import _quiet_highs; h = _quiet_highs(); h.run(); print('solved')")
    assert quiet == "solved\n", quiet
    if "HiGHS" not in loud:
        pytest.skip("this highspy prints no banner, so there is nothing to keep off stdout")


def _topology(tmp_path, *sources: str) -> Path:
    path = tmp_path / "cams.yaml"
    path.write_text(
        textwrap.dedent("""
        name: cams
        tiers:
          - {name: device, nodes: 1, speed: 0.1, memory: 1 GB}
          - {name: edge, nodes: 1, speed: 1.0, memory: 8 GB}
        links:
          - {from: device, to: edge, bandwidth: 50 Mbit/s, latency: 2 ms}
        sources:
    """)
        + "".join(f"  - {source}\n" for source in sources)
    )
    return path


def test_sources_shape_is_what_is_planned_and_streamed(tmp_path, capsys):
    topo = _topology(tmp_path, "{name: camera, count: 1, fps: 5, shape: [1, 3, 64, 48]}")
    out = tmp_path / "plan.json"
    assert main(["partition", "resnet18", "--topology", str(topo), "--out", str(out)]) == 0
    from partition import Plan

    plan = Plan.load(out)
    # resnet18's own example is 1x3x224x224: the plan (and the frames a pipeline streams, plan.example_inputs())
    # has the topology's 1x3x64x48
    assert [list(s.shape) for s in plan.inputs] == [[1, 3, 64, 48]] and plan.inputs[0].dtype == "float32"
    assert list(plan.example_inputs()[0].shape) == [1, 3, 64, 48]
    capsys.readouterr()
    # a plan made for other frames is refused by `run`, before anything starts
    other = tmp_path / "other.json"
    assert main(["partition", "resnet18", "--topology", "three_tier", "--out", str(other)]) == 0
    capsys.readouterr()
    assert main(["run", "resnet18", "--topology", str(topo), "--plan", str(other)]) == 2
    text = " ".join(capsys.readouterr().out.split())
    assert "the plan was made for [1, 3, 224, 224] float32 input" in text and "sources[0] streams [1, 3, 64, 48]" in text


@pytest.mark.parametrize(
    "source, extra, says",
    [
        ("{name: camera, shape: [1, 3, 64, 64], dtype: uint8}", [], "sources[0].dtype is uint8, but the model takes float32 input"),
        ("{name: camera, shape: [1, 3, 64]}", [], "resnet18 cannot take the [1, 3, 64] torch.float32 frames of"),
        ("{name: camera, shape: [1, 3, 64, 64]}", ["--input-shape", "1,3,32,32"], "--input-shape 1,3,32,32 contradicts"),
    ],
)
def test_sources_that_disagree_with_the_model_are_clear_errors(tmp_path, capsys, source, extra, says):
    topo = _topology(tmp_path, source)
    assert main(["partition", "resnet18", "--topology", str(topo), *extra]) == 2
    text = " ".join(capsys.readouterr().out.split())
    assert says in text and "cams.yaml" in text, text


def test_two_sources_with_different_frames_are_refused(tmp_path, capsys):
    topo = _topology(tmp_path, "{name: a, count: 1, shape: [1, 3, 64, 64]}", "{name: b, count: 1, shape: [1, 3, 32, 32]}")
    assert main(["partition", "resnet18", "--topology", str(topo)]) == 2
    text = " ".join(capsys.readouterr().out.split())
    assert re.search(r"sources\[0\] streams \[1, 3, 64, 64\] but .*sources\[1\] streams \[1, 3, 32, 32\]", text), text


def test_partition_plans_do_not_change_between_runs_by_default(tmp_path):
    paths = [tmp_path / f"plan{i}.json" for i in range(2)]
    for path in paths:
        assert main(["partition", "resnet18", "--topology", "smart_city", "--out", str(path)]) == 0
    first, second = (json.loads(p.read_text()) for p in paths)
    for d in (first, second):
        d.pop("partition_s")
    assert first == second


def test_the_readme_python_example_runs_as_written(ray_local, capsys):
    text = (ROOT / "README.md").read_text()
    code = re.search(r"From Python:\n\n```python\n(.*?)```", text, re.S).group(1)
    # as written, in this process: the example's Pipeline takes the Ray this process already runs (saves a start)
    exec(compile(code, "README.md (From Python)", "exec"), {"__name__": "__readme__"})
    lines = capsys.readouterr().out.strip().splitlines()
    # the fps/p99 line, then 8 results "source seq class" from submit/poll/results, each frame once
    assert len(lines) == 9 and len({tuple(line.split()[:2]) for line in lines[1:]}) == 8, lines
