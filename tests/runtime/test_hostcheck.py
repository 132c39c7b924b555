"""`cluster up`'s version check and `--install`, without ssh: the probe run by a local shell, and the whole
command driven through a fake runner that answers as hosts would (the lab test runs it over real ssh)."""

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from partition.topology import HostSpec
from runtime import cluster
from runtime.cli import main
from runtime.errors import ClusterError
from runtime.hostcheck import MARKER, Versions, differences, local_versions, parse_probe, plan_install, probe_script, reference
from tests.runtime.test_cluster_launch import topo_with_hosts

RAY = str(Path(sys.executable).parent / "ray")
HEAD = Versions("3.11", "2.60.0", "2.13.0+cpu", "0.1.0", "x86_64")


def test_the_probe_reports_what_the_python_beside_ray_has():
    done = subprocess.run(["bash", "-c", probe_script(HostSpec(address="x", ray=RAY))], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert parse_probe("edge-0", done.stdout) == local_versions()


def test_the_probe_of_a_host_without_ray_says_what_it_looked_for(tmp_path):
    done = subprocess.run(["bash", "-c", probe_script(HostSpec(address="x", ray=str(tmp_path / "ray")))], capture_output=True, text=True)
    assert done.returncode == 127 and f"ray is not installed (looked for {tmp_path / 'ray'})" in done.stderr
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "ray").write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "ray").chmod(0o755)  # a ray with no python beside it
    done = subprocess.run(
        ["bash", "-c", probe_script(HostSpec(address="x", ray=str(tmp_path / "bin" / "ray")))], capture_output=True, text=True
    )
    assert done.returncode == 127 and "no python beside" in done.stderr
    with pytest.raises(ClusterError, match="edge-0: the version check printed no versions"):
        parse_probe("edge-0", "Welcome to the board\n")


def test_differences_name_the_host_the_field_and_the_fix():
    hosts = {n: HostSpec(address=f"10.0.0.{i}", user="pi") for i, n in enumerate(["device-0", "gateway-0", "edge-0"])}
    reports = {
        "edge-0": HEAD,
        # a CUDA build of the same torch matches: the local label (+cu126) is not compared
        "device-0": Versions("3.11", "2.60.0", "2.13.0+cu126", "0.1.0", "aarch64"),
        "gateway-0": Versions("3.11", "2.60.0", "2.12.0", None, "x86_64"),
    }
    ref, whose = reference(HEAD, HEAD)
    diffs = differences(reports, hosts, ref, whose)
    assert list(diffs) == ["gateway-0"]
    assert diffs["gateway-0"] == (
        "gateway-0 (pi@10.0.0.1): torch 2.12.0, head has 2.13.0+cpu; tierpipe not installed, head has 0.1.0; "
        "install it there or use --install WHEEL"
    )
    # another Python cannot be installed by pip: the fix is another environment; the architecture is shown
    other = differences({"device-0": Versions("3.12", "2.60.0", "2.13.0", "0.1.0", "aarch64")}, hosts, ref, whose)
    assert other["device-0"].startswith("device-0 (pi@10.0.0.0) [aarch64]: python 3.12, head has 3.11; Ray needs one Python")


def test_what_the_head_lacks_is_taken_from_this_machine():
    ref, whose = reference(Versions("3.11", "2.60.0", "2.13.0", None), HEAD)
    assert ref.tierpipe == "0.1.0" and whose["tierpipe"] == "this machine" and whose["torch"] == "head"
    diffs = differences({"edge-0": Versions("3.11", "2.60.0", "2.13.0", None)}, {"edge-0": HostSpec(address="h")}, ref, whose)
    assert "tierpipe not installed, this machine has 0.1.0" in diffs["edge-0"]


def test_install_sends_the_wheel_on_stdin_and_pins_the_heads_torch_and_ray(tmp_path):
    wheel = tmp_path / "tierpipe-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK\x03\x04 a wheel")
    hosts = {"gateway-0": HostSpec(address="10.0.0.2", user="pi", key="~/.ssh/lab", ray="/opt/venv/bin/ray")}
    [step] = plan_install(hosts, ["gateway-0"], wheel, HEAD)
    assert base64.b64decode(step.stdin) == wheel.read_bytes() and step.what == "install"
    line = step.display()
    assert line.endswith("< wheel (base64)") and "PK" not in line
    assert "pip install --quiet --disable-pip-version-check" in step.script and "torch==2.13.0 'ray[default]==2.60.0'" in step.script
    assert "command -v /opt/venv/bin/ray" in step.script and "-i" in step.argv()
    with pytest.raises(ClusterError, match="not a wheel file"):
        plan_install(hosts, ["gateway-0"], tmp_path / "missing.whl", HEAD)


class FakeHosts:
    """Answers each step as hosts would: the check prints the host's versions; ``installed`` lists where
    an install ran, after which that host reports the head's versions."""

    def __init__(self, versions: dict[str, Versions]) -> None:
        self.versions = versions
        self.ran: list[tuple[str, str]] = []

    def __call__(self, step):
        self.ran.append((step.what, step.node))
        out = ""
        if step.what == "check":
            out = f"{MARKER} {json.dumps(self.versions[step.node].__dict__)}\n"
        elif step.what == "install":
            self.versions[step.node] = self.versions["edge-0"]
        return subprocess.CompletedProcess(step.argv(), 0, out, "")


@pytest.fixture
def lab_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TIERPIPE_TOKEN_PATH", str(tmp_path / "ray_token"))
    hosts = {n: {"address": f"192.0.2.{i + 1}", "user": "pi"} for i, n in enumerate(["device-0", "gateway-0", "edge-0"])}
    path = tmp_path / "lab.yaml"
    path.write_text(json.dumps(topo_with_hosts(hosts).model_dump(by_alias=True, exclude={"source_file"}, exclude_none=True)))
    return path


def _fake(monkeypatch, **versions) -> FakeHosts:
    fake = FakeHosts({"device-0": HEAD, "gateway-0": HEAD, "edge-0": HEAD, **versions})
    monkeypatch.setattr(cluster, "SshRunner", lambda: fake)
    return fake


def test_up_refuses_a_host_that_differs_before_starting_anything(lab_file, monkeypatch, capsys):
    fake = _fake(monkeypatch, **{"gateway-0": Versions("3.11", "2.60.0", "2.12.0", "0.1.0")})
    assert main(["cluster", "up", str(lab_file)]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert "these hosts differ from the head, so nothing was started" in out
    assert "gateway-0 (pi@192.0.2.2): torch 2.12.0, head has 2.13.0+cpu; install it there or use --install WHEEL" in out
    assert {what for what, _ in fake.ran} == {"check"}  # no token copied, no Ray started


def test_install_then_check_again_then_start(lab_file, tmp_path, monkeypatch, capsys):
    wheel = tmp_path / "tierpipe-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    fake = _fake(monkeypatch, **{"device-0": Versions("3.11", "2.60.0", None, None, "aarch64")})
    assert main(["cluster", "up", str(lab_file), "--install", str(wheel)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "installing tierpipe-0.1.0-py3-none-any.whl (torch==2.13.0, ray==2.60.0) on device-0" in out
    assert "versions: every host has python 3.11, ray 2.60.0, torch 2.13.0+cpu, tierpipe 0.1.0" in out
    checks, rest = fake.ran[:3], fake.ran[3:]
    assert {w for w, _ in checks} == {"check"} and rest[0] == ("install", "device-0")  # only the host that differed
    assert [w for w, _ in rest[1:4]] == ["check"] * 3 and ("start", "device-0") in rest  # checked again, then started


def test_emulate_true_is_named_and_the_dry_run_shows_the_install(lab_file, tmp_path, capsys):
    data = json.loads(lab_file.read_text())
    lab_file.write_text(json.dumps({**data, "emulate": True}))
    assert main(["cluster", "up", str(lab_file), "--dry-run", "--install", str(tmp_path / "tierpipe-0.1.0-py3-none-any.whl")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "warning: " in out and "says emulate: true" in out and "counted twice" in out and "--emulate off" in out
    assert out.count("< wheel (base64)") == 3


def test_install_leaves_a_host_of_another_python_alone_and_refuses_it(lab_file, tmp_path, monkeypatch, capsys):
    wheel = tmp_path / "tierpipe-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    fake = _fake(monkeypatch, **{"gateway-0": Versions("3.12", "2.60.0", "2.13.0", "0.1.0")})
    assert main(["cluster", "up", str(lab_file), "--install", str(wheel)]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert "gateway-0 (pi@192.0.2.2): python 3.12, head has 3.11; Ray needs one Python on every node" in out
    assert {what for what, _ in fake.ran} == {"check"}  # pip cannot change a Python: nothing installed, nothing started
