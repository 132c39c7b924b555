"""`tierpipe cluster`: dry-run, bad input, up/status/down over a real sshd on loopback, and `cluster local`.

The ssh tests start Debian's sshd (openssh-server, installed by .ci/run) on 127.0.0.1-3 with
throw-away keys; without sshd installed they are skipped with that reason. Every "host" is
this machine, reached over real ssh, so each node gets its own raylet as in a lab.
"""

import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from partition import Topology
from runtime.cli_cluster import plan_lines
from runtime.cluster import cluster_status, ensure_token, execute, plan_down, plan_local, plan_up, reset_token_cache, use_token
from runtime.errors import ClusterError
from runtime.sessions import session_processes

pytestmark = pytest.mark.ray_cluster
GOLDEN = Path(__file__).parent / "golden" / "smart_city_up.txt"
RAY = str(Path(sys.executable).parent / "ray")


def test_dry_run_for_smart_city_line_by_line(monkeypatch):
    monkeypatch.setenv("HOME", "/home/operator")  # keys under ~ expand the same everywhere
    lines = plan_lines(plan_up(Topology.load("smart_city")))
    expected = GOLDEN.read_text().splitlines()
    assert len(lines) == len(expected) == 21 * 4  # a header and 3 commands per host
    for got, want in zip(lines, expected):
        assert got == want
    # the head is the edge server, every worker joins it, the token never appears on a command line
    assert lines[0] == "# edge-0 @ 203.0.113.10" and "--head --port 6379" in lines[3]
    assert all("--address 203.0.113.10:6379" in line for line in lines[4:] if "ray start" in line)
    assert all(line.endswith("< token") for line in lines if "ray_token\"'" in line)


def topo_with_hosts(hosts: dict, tiers=("device", "gateway", "edge")) -> Topology:
    return Topology.from_dict(
        {
            "name": "lab",
            "tiers": [{"name": t, "speed": 1} for t in tiers],
            "links": [{"from": a, "to": b, "bandwidth": "100 Mbit/s"} for a, b in zip(tiers, tiers[1:])],
            "hosts": hosts,
        },
        source="lab.yaml",
    )


def test_hosts_missing_names_the_nodes():
    with pytest.raises(ClusterError, match=r"lab.yaml: hosts: no host for \['gateway-0', 'edge-0'\]"):
        plan_up(topo_with_hosts({"device-0": {"address": "192.0.2.1"}}))


def test_a_host_listed_twice_is_refused():
    hosts = {"device-0": {"address": "192.0.2.1"}, "gateway-0": {"address": "192.0.2.1"}, "edge-0": {"address": "192.0.2.3"}}
    with pytest.raises(ClusterError, match=r"hosts.gateway-0: host 192.0.2.1:22 is also listed for device-0 .tier 'device'."):
        plan_up(topo_with_hosts(hosts))


def test_nodes_of_one_tier_on_one_host_get_one_ray_node_that_places_them_all(monkeypatch):
    """A grouped lab (more nodes than hosts): one Ray node per host, labelled with the host's address;
    every node of the group is placed there and `cluster status` counts it up."""
    from runtime.cluster import HOST_LABEL, NODE_LABEL, TIER_LABEL, cluster_status, plan_down
    from runtime.placement import actor_options

    monkeypatch.setattr("runtime.placement.gpu_share", lambda topology, tier: 0.0)  # no Ray here
    topo = Topology.from_dict(
        {
            "name": "lab",
            "tiers": [{"name": "device", "nodes": 3, "speed": 1}, {"name": "edge", "speed": 1}],
            "links": [{"from": "device", "to": "edge", "bandwidth": "100 Mbit/s"}],
            "hosts": {**{f"device-{i}": {"address": "192.0.2.1"} for i in range(3)}, "edge-0": {"address": "192.0.2.9"}},
        },
        source="lab.yaml",
    )
    steps = plan_up(topo)
    starts = [s for s in steps if s.what == "start"]
    assert [s.node for s in starts] == ["edge-0", "device-0"]  # the head first; one start for the three devices
    assert [s.node for s in steps if s.what == "check"] == ["edge-0", "device-0"]
    assert f"{HOST_LABEL}=192.0.2.1" in starts[1].script and f"{NODE_LABEL}=device-0" in starts[1].script
    assert [s.node for s in plan_down(topo)] == ["device-0", "edge-0"]
    labelled = [
        {TIER_LABEL: "edge", NODE_LABEL: "edge-0", HOST_LABEL: "192.0.2.9"},
        {TIER_LABEL: "device", NODE_LABEL: "device-0", HOST_LABEL: "192.0.2.1"},
    ]
    assert actor_options(topo, "x:1", "device-0", "device", labelled)["label_selector"] == {NODE_LABEL: "device-0"}
    assert actor_options(topo, "x:1", "device-2", "device", labelled)["label_selector"] == {TIER_LABEL: "device", HOST_LABEL: "192.0.2.1"}
    rows, ok = cluster_status(topo, [{"Alive": True, "Labels": lab, "Resources": {}} for lab in labelled])
    assert ok and [r["state"] for r in rows] == ["up"] * 4


def test_unknown_head():
    hosts = {n: {"address": f"192.0.2.{i}"} for i, n in enumerate(["device-0", "gateway-0", "edge-0"])}
    with pytest.raises(ClusterError, match="--head 'cloud-0' is not a node"):
        plan_up(topo_with_hosts(hosts), head="cloud-0")


def test_unreachable_host_starts_nothing():
    # nothing listens on port 1: ssh fails at once with "Connection refused"
    hosts = {
        "device-0": {"address": "127.0.0.1", "port": 1},
        "gateway-0": {"address": "127.0.0.2", "port": 1},
        "edge-0": {"address": "127.0.0.3", "port": 1},
    }
    ran = []

    def runner(step):
        ran.append(step.what)
        return subprocess.run(step.argv(), input=step.stdin, capture_output=True, text=True, timeout=30)

    with pytest.raises(ClusterError) as err:
        execute(plan_up(topo_with_hosts(hosts)), runner)
    msg = str(err.value)
    assert "nothing was started" in msg and "edge-0 (127.0.0.3:1)" in msg and "Connection refused" in msg
    assert set(ran) == {"check"}


# ---------------------------------------------------------------------- real sshd
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd_server(tmp_path_factory):
    binary = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.path.exists(binary):
        pytest.skip("sshd is not installed here (apt-get install openssh-server); .ci/run installs it for CI")
    d = tmp_path_factory.mktemp("sshd")
    home = d / "home"  # the 'remote' home: the token lands here, not in the real ~
    home.mkdir()
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    os.makedirs("/run/sshd", exist_ok=True)
    port = _free_port()
    cfg = d / "sshd_config"
    cfg.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                "ListenAddress 127.0.0.2",
                "ListenAddress 127.0.0.3",
                f"HostKey {d / 'host_key'}",
                f"AuthorizedKeysFile {d / 'authorized_keys'}",
                "StrictModes no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "UsePAM no",
                f"PidFile {d / 'sshd.pid'}",
                f"SetEnv HOME={home}",
                "",
            ]
        )
    )
    proc = subprocess.Popen([binary, "-D", "-e", "-f", str(cfg)], stderr=subprocess.PIPE)
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    yield {
        "port": port,
        "key": str(d / "client_key"),
        "user": os.environ.get("USER", "root"),
        "home": home,
        "known_hosts": d / "known_hosts",
    }
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def sshd(sshd_server):
    """The sshd, for one test. Its 'hosts' are all this machine, so the test's `ray stop` stops every
    Ray here: none may run in this process meanwhile (a shuffled run put a test's local Ray first; the
    stop took it, and with it the pytest process)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    return sshd_server


@pytest.fixture
def token(tmp_path):
    """A fresh cluster token for the test; this process is its client until the test ends.

    The environment is restored *before* Ray's in-process auth settings are re-read: the other
    order left this process in token mode, and a later test's Ray cluster (no token) cancelled
    its actors (a shuffled run that put this file before test_cluster.py)."""
    path = tmp_path / "ray_token"
    before = os.environ.get("RAY_AUTH_MODE")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TIERPIPE_TOKEN_PATH", str(path))
        env.setenv("RAY_AUTH_MODE", "token")
        env.setenv("RAY_AUTH_TOKEN_PATH", str(path))
        yield ensure_token()
    reset_token_cache()
    assert os.environ.get("RAY_AUTH_MODE") == before


def ssh_topology(sshd, port_ray: int) -> Topology:
    hosts = {
        node: {"address": f"127.0.0.{i + 1}", "port": sshd["port"], "user": sshd["user"], "key": sshd["key"], "ray": RAY, "cpus": 1}
        for i, node in enumerate(["device-0", "gateway-0", "edge-0"])
    }
    return topo_with_hosts(hosts)


def connect(address: str, token_file: str):
    import ray

    if ray.is_initialized():
        ray.shutdown()
    use_token(Path(token_file), override=True)
    ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    return ray


def test_up_status_down_over_real_ssh(sshd, token, monkeypatch):
    monkeypatch.setenv("SSH_KNOWN_HOSTS", "")
    port = _free_port()
    topo = ssh_topology(sshd, port)
    try:
        done = execute(plan_up(topo, port=port, token=token))
        assert done == ["edge-0: started", "device-0: started", "gateway-0: started"]
        assert (sshd["home"] / ".tierpipe" / "ray_token").read_text() == token  # copied over ssh's stdin
        again = execute(plan_up(topo, port=port, token=token))  # idempotent
        assert again == ["edge-0: already running", "device-0: already running", "gateway-0: already running"]
        ray = connect(f"127.0.0.1:{port}", os.environ["TIERPIPE_TOKEN_PATH"])
        rows, ok = cluster_status(topo, ray.nodes())
        ray.shutdown()
        assert ok and [r["state"] for r in rows] == ["up", "up", "up"]
        assert rows[1]["labels"] == "tier=gateway,tier-host=127.0.0.2,tier-node=gateway-0"
    finally:
        stopped = execute(plan_down(topo))
    assert stopped == ["device-0: stopped", "gateway-0: stopped", "edge-0: stopped"]
    left = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
    assert f"--gcs-address=127.0.0.1:{port}" not in left and f"gcs_server_port={port}" not in left


def test_a_head_that_refuses_a_worker(sshd, token, tmp_path, monkeypatch):
    """The head runs with another token: `up` skips it (already running) and the workers are refused."""
    port = _free_port()
    topo = ssh_topology(sshd, port)
    other = tmp_path / "other_token"
    other.write_text("a-different-cluster-token")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(other)}
    subprocess.run(
        [
            RAY,
            "start",
            "--head",
            "--port",
            str(port),
            "--labels",
            "tier=edge,tier-node=edge-0",
            "--num-cpus",
            "1",
            "--disable-usage-stats",
            "--include-dashboard",
            "false",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    try:
        with pytest.raises(ClusterError) as err:
            execute(plan_up(topo, port=port, token=token))
        msg = str(err.value)
        assert "start failed on device-0 (" in msg and "InvalidAuthToken" in msg
        assert "already started: nothing" in msg  # the head was already running; nothing new started
    finally:
        execute(plan_down(topo))


# ---------------------------------------------------------------------- cluster local
def test_cluster_local_places_actors_reports_missing_and_refuses_strangers(token, tmp_path, monkeypatch):
    """Through the CLI: `cluster local`, a pipeline on it, `cluster status` (0, then 1), `cluster down --local`."""
    import torch
    import yaml

    from runtime.cli import main
    from runtime.pipeline import Pipeline
    from tests.runtime.test_pipeline import chain_plan, eager, fan_in_topology

    # fast failure detection, so a removed raylet shows up as dead within seconds
    monkeypatch.setenv("RAY_health_check_period_ms", "500")
    monkeypatch.setenv("RAY_health_check_failure_threshold", "3")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    topo = fan_in_topology(devices=2, gateways=1)
    path = tmp_path / "dev.yaml"
    path.write_text(yaml.safe_dump(topo.model_dump(by_alias=True, exclude={"source_file"})))
    assert len(plan_local(topo, port=port)) == 4  # one raylet per node: 2 devices, 1 gateway, 1 edge
    try:
        assert main(["cluster", "local", str(path), "--port", str(port)]) == 0
        ray = connect(address, os.environ["TIERPIPE_TOKEN_PATH"])
        labels = {n["NodeID"]: n["Labels"] for n in ray.nodes() if n["Alive"]}
        assert len(labels) == 4
        model, plan = chain_plan(topo)
        inputs = [(torch.randn(1, 16),) for _ in range(10)]
        with Pipeline(plan, model, topo, address=address, max_batch=1) as pipe:
            placed = {node: ray.get(h.node_id.remote()) for node, h in pipe.stages.items()}
            outputs = pipe.run(inputs)
        assert all(labels[nid]["tier-node"] == node for node, nid in placed.items())
        assert all(torch.equal(a, b) for a, b in zip(outputs, eager(model, inputs)))
        ray.shutdown()
        assert main(["cluster", "status", str(path), "--address", address]) == 0
        # remove the gateway's raylet mid-test: status must call it missing and exit 1
        ps = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True).stdout
        pid = next(int(line.split()[0]) for line in ps.splitlines() if "raylet/raylet" in line and '"tier-node": "gateway-0"' in line)
        os.kill(pid, 9)
        for _ in range(30):
            connect(address, os.environ["TIERPIPE_TOKEN_PATH"])
            rows, ok = cluster_status(topo, ray.nodes())
            ray.shutdown()
            if not ok:
                break
            time.sleep(0.5)
        assert {r["node"]: r["state"] for r in rows}["gateway-0"] == "missing"
        assert main(["cluster", "status", str(path), "--address", address]) == 1
        # a client with the wrong token is refused
        stranger = subprocess.run(
            [sys.executable, "-c", f"import ray; ray.init(address='{address}')"],
            env={
                **os.environ,
                "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN": "not-the-token",
                "RAY_gcs_server_port_wait_time_s": "2",
            },  # 2 refused tries, not Ray's default 20 (1 s each)
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert stranger.returncode != 0 and "InvalidAuthToken" in stranger.stderr
    finally:
        import ray as _ray

        if _ray.is_initialized():
            _ray.shutdown()
        # a Ray that `cluster local` did not start, on another port: `down --local` must leave it running
        other = _free_port()
        starter = subprocess.Popen(
            ["ray", "start", "--head", "--port", str(other), "--num-cpus", "0", "--include-dashboard", "false", "--disable-usage-stats"],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")},
        )
        assert starter.wait(timeout=120) == 0
        try:
            assert main(["cluster", "down", "--local"]) == 0
            raylets = [
                line
                for line in subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
                if "raylet/raylet" in line
            ]
            assert not [line for line in raylets if f":{port} " in line + " " or "tier-node" in line], "the local cluster still runs"
            assert [line for line in raylets if f":{other} " in line + " "], "down --local stopped a Ray it did not start"
        finally:
            for pid in session_processes({starter.pid}):
                os.kill(pid, 9)
