"""`cluster up` on a real lab (root, namespaces, sshd): the version check over ssh, and `--tls` with a packet
capture on a lab link. One lab for the module; a TLS cluster, then a plain one, on it.

The frames streamed hold a known 64-byte pattern. The driver runs in the head's namespace (edge-0) and
feeds device-0, so every frame crosses the gateway's link to the device (``<prefix>0d``) as Ray sends it:
with TLS the capture must not hold the pattern, without it the capture must.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from partition import Topology
from runtime.cli import main
from runtime.cluster import Step, execute, plan_up
from runtime.errors import ClusterError
from tests.runtime.labtools import _why_no_lab
from tests.runtime.test_cluster_launch import _free_port

REPO = Path(__file__).resolve().parents[2]
# a prefix of its own; 198.18 stays a user's (another network where several labs share a machine)
PREFIX, NETWORK = "tpk-", os.environ.get("TIERPIPE_TEST_LAB_NETWORK", "198.19.64.0/20")
why = _why_no_lab() or (None if shutil.which("tcpdump") else "missing tcpdump (apt-get install tcpdump)")
pytestmark = [pytest.mark.ray_cluster, pytest.mark.skipif(why is not None, reason=f"a real lab {why}")]
MARKER = b"tierpipe-plaintext-frame:" + bytes(range(65, 65 + 26)) + b"0123456789abc"  # 64 bytes: 16 float32
FRAMES = 30

DRIVE = f"""
import sys, torch
from partition import Topology
from runtime.pipeline import Pipeline
from tests.runtime.test_pipeline import chain_plan, eager
topo = Topology.load(sys.argv[1])
model, plan = chain_plan(topo)
frame = torch.frombuffer(bytearray({MARKER!r}), dtype=torch.float32).reshape(1, 16)
inputs = [(frame.clone(),) for _ in range({FRAMES})]
with Pipeline(plan, model, topo, address=sys.argv[2], max_batch=1, emulate=False) as pipe:
    outputs = pipe.run(inputs)
print("equal", sum(torch.allclose(a, b, equal_nan=True) for a, b in zip(outputs, eager(model, inputs))))
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The lab and its LAB.yaml; Ray there runs this checkout (PYTHONPATH), whatever `pip install -e` points at."""
    directory = tmp_path_factory.mktemp("lab")
    out = directory.parent / "lab.yaml"
    argv = ["lab", "up", "three_tier", "--prefix", PREFIX, "--network", NETWORK, "--dir", str(directory), "--out", str(out)]
    assert main(argv) == 0
    data = yaml.safe_load(out.read_text())
    for host in data["hosts"].values():
        host["env"]["PYTHONPATH"] = str(REPO)
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    topo = Topology.load(out)
    head = topo.hosts["edge-0"].address  # (ssh checks the lab's host key against the lab's own known_hosts)
    ports = []
    yield out, topo, head, ports
    from runtime import tls

    main(["lab", "down", "--dir", str(directory), "--purge-keys"])  # stops every process in the lab's namespaces
    for port in ports:  # a lab host's home is this machine's: the nodes' certificates landed in ~/.tierpipe/tls
        tls.forget(tls.cluster_id(head, port))
    for folder in ("tls", "wheels"):  # and the folders the hosts made there, when nothing else is in them
        try:
            (Path.home() / ".tierpipe" / folder).rmdir()
        except OSError:
            pass


def _stop(head: str, port: int) -> None:
    """Stop one cluster on the lab, by pid: its processes name the head's address or GCS port (`ray stop`
    would stop every Ray on this machine)."""
    mine = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if f"{head}:{port}" in args or f"gcs_server_port={port} " in args + " ":
            mine.append(int(pid))
    for pid in mine:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in mine):
        time.sleep(0.2)


def _up(*args: str) -> int:
    """`cluster up`, once more when it fails: Ray gives a raylet a fixed 30 s to register, which a machine
    shared with other jobs can exceed; `up` is made to be run again (nodes already up are skipped)."""
    code = main(["cluster", "up", *args])
    return code if code == 0 else main(["cluster", "up", *args])


def _capture_a_run(lab, address: str, tmp_path: Path) -> tuple[str, bytes]:
    """Stream the frames while tcpdump records the device's link at the gateway; returns (driver output, capture)."""
    pcap = tmp_path / "link.pcap"
    dump = subprocess.Popen(
        ["ip", "netns", "exec", f"{PREFIX}gateway-0", "tcpdump", "-i", f"{PREFIX}0d", "-U", "-w", str(pcap)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "listening on" in dump.stderr.readline()
        run = subprocess.run(
            [sys.executable, "-c", DRIVE, str(lab[0]), address],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        dump.send_signal(signal.SIGINT)
        dump.wait(timeout=30)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout, pcap.read_bytes()


def _other_python(here: str) -> tuple[Path, str] | None:
    """A Python of another major.minor on this machine (pyenv's, or python3.X on PATH), and its version."""
    candidates = sorted(Path(sys.base_prefix).parent.glob("3.*/bin/python3")) + [
        Path(p) for m in range(8, 15) if (p := shutil.which(f"python3.{m}"))
    ]
    for path in candidates:
        done = subprocess.run(
            [path, "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"], capture_output=True, text=True
        )
        if done.returncode == 0 and done.stdout.strip() not in ("", here):
            return path, done.stdout.strip()
    return None


def test_a_host_whose_ray_has_another_python_beside_it_is_named_and_nothing_starts(lab, tmp_path, capsys):
    out, topo, head, ports = lab
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    other = _other_python(here)
    if other is None:
        pytest.skip(f"no Python other than {here} on this machine to give a host")
    other, theirs = other
    # gateway-0's ray: the real one, in a folder whose python is another version (a host set up with another Python)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").symlink_to(other)
    (tmp_path / "bin" / "ray").symlink_to(Path(sys.executable).parent / "ray")
    data = yaml.safe_load(out.read_text())
    data["hosts"]["gateway-0"]["ray"] = str(tmp_path / "bin" / "ray")
    odd = tmp_path / "odd.yaml"
    odd.write_text(yaml.safe_dump(data, sort_keys=False))
    port = _free_port()
    assert main(["cluster", "up", str(odd), "--port", str(port)]) == 2
    text = " ".join(capsys.readouterr().out.split())
    assert f"gateway-0 (root@{topo.hosts['gateway-0'].address}): python {theirs}, head has {here}" in text, text
    assert "device-0 (" not in text and "edge-0 (" not in text  # the hosts that match are not named
    assert "nothing was started" in text
    ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
    assert f"{head}:{port}" not in ps and f"gcs_server_port={port}" not in ps


def test_tls_encrypts_the_links_and_refuses_nodes_without_certificate_or_token(lab, tmp_path, capsys):
    out, topo, head, ports = lab
    port = _free_port()
    ports.append(port)
    try:
        assert _up(str(out), "--tls", "--port", str(port)) == 0
        text = " ".join(capsys.readouterr().out.split())
        assert "versions: every host has" in text and "cluster up with TLS" in text
        printed, capture = _capture_a_run(lab, f"{head}:{port}", tmp_path)
        assert printed.split() == ["equal", str(FRAMES)]  # every frame came back right, over TLS
        print(f"with --tls: {len(capture)} bytes captured on {PREFIX}0d, the frames' pattern {capture.count(MARKER)} times")
        assert len(capture) > FRAMES * len(MARKER) and MARKER not in capture  # the frames crossed, encrypted
        # a node started by tierpipe without the certificate (a plain start) is refused, and told why
        plain = next(s for s in plan_up(topo, port=port) if s.what == "start" and s.node == "device-0")
        fast = "export RAY_gcs_rpc_server_reconnect_timeout_s=5 RAY_gcs_server_port_wait_time_s=2; "
        intruder = Step("device-0", plain.host, "start", fast + plain.script.replace("device-0", "intruder"))
        with pytest.raises(ClusterError) as refused:
            execute([intruder])
        assert "Failed to connect to GCS" in str(refused.value) and "refuses a node without its certificate" in str(refused.value)
        # with the certificate but another token: refused by the head's token check
        steps = plan_up(topo, port=port, tls={n: "" for n in ("device-0", "gateway-0", "edge-0")})
        secure = next(s for s in steps if s.what == "start" and s.node == "device-0")
        (tmp_path / "wrong_token").write_text("not-the-token")
        script = secure.script.replace('device-0"', 'intruder"').replace("tier-node=device-0", "tier-node=intruder")
        script = fast + script.replace("$HOME/.tierpipe/ray_token", str(tmp_path / "wrong_token"))
        with pytest.raises(ClusterError, match="InvalidAuthToken"):
            execute([Step("device-0", plain.host, "start", script)])
        ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
        assert "tier-node=intruder" not in ps and '"tier-node": "intruder"' not in ps
    finally:
        _stop(head, port)
    # the same run on a plain cluster: the frames cross as they are
    port = _free_port()
    ports.append(port)
    try:
        assert _up(str(out), "--port", str(port)) == 0
        printed, capture = _capture_a_run(lab, f"{head}:{port}", tmp_path)
        assert printed.split() == ["equal", str(FRAMES)]
        print(f"without: {len(capture)} bytes captured on {PREFIX}0d, the frames' pattern {capture.count(MARKER)} times")
        assert capture.count(MARKER) >= FRAMES // 2, f"{capture.count(MARKER)} of {FRAMES} frames seen in the clear"
    finally:
        _stop(head, port)


def _wheel(out: Path, version: str | None = None) -> Path:
    """A tierpipe wheel of this checkout (at another ``version`` when given), built from a copy of it."""
    src = out / f"src-{version or 'this'}"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis"))
    if version:
        project = src / "pyproject.toml"
        text = project.read_text()
        project.write_text(text.replace('\nversion = "', f'\nversion = "{version}"\n# was: version = "', 1))
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out / "dist"), str(src)]
    subprocess.run(pip, check=True, capture_output=True, timeout=300)
    return next((out / "dist").glob(f"tierpipe-{version or '*'}-*.whl"))


def test_install_puts_the_heads_tierpipe_on_a_host_that_has_another(lab, tmp_path, capsys):
    """gateway-0's Ray comes from a venv (over this Python's packages) holding tierpipe 0.0.1, built from this
    checkout with its version changed: named; `--install WHEEL` replaces it over ssh, checks again, starts."""
    out, topo, head, ports = lab
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True, timeout=120)
    old = _wheel(tmp_path, "0.0.1")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", str(old)]
    subprocess.run(pip, check=True, capture_output=True, timeout=300)
    (venv / "bin" / "ray").write_text('#!/bin/sh\nexec "$(dirname "$0")/python" -m ray.scripts.scripts "$@"\n')
    (venv / "bin" / "ray").chmod(0o755)
    data = yaml.safe_load(out.read_text())
    data["hosts"]["gateway-0"]["ray"] = str(venv / "bin" / "ray")
    odd = tmp_path / "odd.yaml"
    odd.write_text(yaml.safe_dump(data, sort_keys=False))
    port = _free_port()
    assert main(["cluster", "up", str(odd), "--port", str(port)]) == 2
    text = " ".join(capsys.readouterr().out.split())
    here = subprocess.run(
        [sys.executable, "-c", "from importlib import metadata; print(metadata.version('tierpipe'))"], capture_output=True, text=True
    )
    assert f"gateway-0 (root@{topo.hosts['gateway-0'].address}): tierpipe 0.0.1, head has {here.stdout.strip()}; install it there" in text
    new = _wheel(tmp_path)
    try:
        assert _up(str(odd), "--port", str(port), "--install", str(new)) == 0
        text = " ".join(capsys.readouterr().out.split())
        assert f"installing {new.name}" in text and "on gateway-0" in text and "versions: every host has" in text
        assert "gateway-0: started" in text or "gateway-0: already running" in text
        got = subprocess.run(
            [venv / "bin" / "python", "-c", "from importlib import metadata; print(metadata.version('tierpipe'))"],
            capture_output=True,
            text=True,
        )
        assert got.stdout.strip() == new.name.split("-")[1]  # the venv now holds the wheel's version
        ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
        python = str(venv / "bin" / "python")  # gateway-0's Ray processes run the venv's python
        assert any(python in line and f"{head}:{port}" in line for line in ps.splitlines()), ps
    finally:
        _stop(head, port)
