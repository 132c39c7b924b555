"""``tierpipe lab``: the plan of a lab (addresses, groups, quotas, routes) without root; and, as root
with ``ip`` and ``sshd``, a real lab of three_tier: reachable hosts, shaped links, ssh into the
node's cgroup, a LAB.yaml that loads, and a ``lab down`` that leaves nothing behind."""

import ipaddress
import json
import os
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from partition import Topology
from runtime.cli import main
from runtime.errors import LabError
from runtime.lab.labfile import lab_topology
from runtime.lab.plan import MIN_PERIOD_US, MIN_QUOTA_US, PERIOD_US, LabPlan, plan_lab
from tests.runtime.labtools import in_netns as _in_netns
from tests.runtime.labtools import leftovers, measure_mbps, root_only
from tests.runtime.test_cli_lean import _probe

BENCH = ipaddress.ip_network("198.18.0.0/15")


def _topology(tiers: str, links: str, extra: str = "") -> Topology:
    return Topology.from_yaml(f"name: t\ntiers:\n{textwrap.indent(tiers, '  ')}\nlinks:\n{textwrap.indent(links, '  ')}\n{extra}")


def _big() -> Topology:
    """64 cameras -> 8 gateways -> 2 edge servers -> 1 cloud: 75 nodes."""
    return _topology(
        "- {name: device, nodes: 64, speed: 0.05}\n- {name: gateway, nodes: 8, speed: 0.5}\n"
        "- {name: edge, nodes: 2, speed: 2}\n- {name: cloud, nodes: 1, speed: 8}",
        "- {from: device, to: gateway, bandwidth: 10 Mbit/s}\n- {from: gateway, to: edge, bandwidth: 100 Mbit/s}\n"
        "- {from: edge, to: cloud, bandwidth: 1 Gbit/s}",
    )


def _walk(plan: LabPlan, start: str | None, address: str, tables: dict | None = None) -> list[str]:
    """Follow the routing tables of ``plan`` from host ``start`` (None: the root namespace) to ``address``;
    returns the hosts passed. Each hop must leave on the device that links the two namespaces."""
    by_address = {h.address: h for h in plan.hosts}
    tables = {} if tables is None else tables
    here, passed = start, []
    for _ in range(2 * len(plan.hosts) + 2):
        if here is not None and plan.host(here).address == address:
            return passed
        if here not in tables:
            tables[here] = {dst: (dev, via) for dst, dev, via in plan.routes(here)}
        routes = tables[here]
        dev, via = routes.get(f"{address}/32") or routes["default"]
        hop = via or address
        nxt = None if hop == plan.root_address else by_address[hop].name
        me, to = (plan.host(here) if here else None), (plan.host(nxt) if nxt else None)
        if me is None:  # the root namespace reaches the sink hosts on the bridge
            assert to.parent is None and dev == plan.bridge
        elif to is not None and to.parent == here:  # down to a child
            assert dev == to.downlink
        else:  # up to the parent, or from a sink host across the bridge (to the root or another sink host)
            assert nxt == me.parent or (me.parent is None and (to is None or to.parent is None)), f"{here} -> {nxt}: no such link"
            assert dev == me.uplink
        passed.append(nxt)
        here = nxt
    raise AssertionError(f"no route from {start} to {address}")


# ------------------------------------------------------------------ the plan, no root
@pytest.mark.parametrize("name", ["three_tier", "local", "smart_city", "big"])
def test_every_host_has_its_own_address_names_and_a_route_to_every_other(name):
    topo = _big() if name == "big" else Topology.load(name)
    plan = plan_lab(topo, machine_cores=2, max_hosts=250)
    addresses = [ipaddress.ip_address(h.address) for h in plan.hosts] + [ipaddress.ip_address(plan.root_address)]
    assert len(set(addresses)) == len(addresses) and all(a in BENCH for a in addresses)
    links = [h.uplink for h in plan.hosts] + [h.downlink for h in plan.hosts] + [plan.bridge]
    assert len(set(links)) == len(links) and max(map(len, links)) <= 15  # IFNAMSIZ
    assert len({h.netns for h in plan.hosts}) == len(plan.hosts)
    assert sorted(n for h in plan.hosts for n in h.nodes) == sorted(n for t in topo.path for n in t.node_names())
    for h in plan.hosts:  # a node's host hangs under its parent's host
        assert h.parent == (plan.host_of(topo.parents[h.nodes[0]]).name if h.parent else None)
    tables: dict = {}
    for a in [None, *(h.name for h in plan.hosts)]:
        for b in plan.hosts:
            _walk(plan, a, b.address, tables)
    # device-0 to edge-0 crosses the gateway: both shaped links a frame crosses
    if name == "three_tier":
        assert _walk(plan, "device-0", plan.host("edge-0").address) == ["gateway-0", "edge-0"]
        assert _walk(plan, None, plan.host("device-0").address) == ["edge-0", "gateway-0", "device-0"]


def test_a_topology_larger_than_the_limit_is_grouped_per_tier_under_one_parent():
    topo = Topology.load("smart_city")  # 16 devices, 4 gateways, 1 edge: 21 nodes
    plan = plan_lab(topo, machine_cores=2, max_hosts=8)
    assert len(plan.hosts) <= 8 and plan.grouped
    for h in plan.hosts:
        assert {n.rsplit("-", 1)[0] for n in h.nodes} == {h.tier}
        parents = {plan.host_of(topo.parents[n]).name for n in h.nodes} if h.parent else {None}
        assert parents == {h.parent}, f"{h.name} holds nodes of different parent hosts"
        if h.shape:  # every camera has a 20 Mbit/s link of its own: a host of 3 cameras gets 60
            link = topo.links[topo.tier_index(h.tier)]
            assert h.shape.rate_mbps == pytest.approx(link.bandwidth_mbps * len(h.nodes))
    assert "grouped" in plan.notes[0] and "device-g0 = device-0.." in plan.notes[0]
    assert [h.name for h in plan.hosts if h.tier == "edge"] == ["edge-0"]
    # at most one host per tier still works; fewer hosts than tiers cannot
    assert [len(h.nodes) for h in plan_lab(topo, 2, max_hosts=3).hosts] == [16, 4, 1]
    with pytest.raises(LabError, match="--max-hosts 2: give from 3"):
        plan_lab(topo, 2, max_hosts=2)
    big = plan_lab(_big(), machine_cores=2, max_hosts=16)
    assert len(big.hosts) <= 16 and [h.name for h in big.hosts if h.tier == "cloud"] == ["cloud-0"]


def test_quotas_give_each_tier_its_speed_scaled_down_together_to_fit_the_cores():
    topo = Topology.load("three_tier")  # speeds 0.1, 1.0, 4.0: speed 1.0 = one core
    # asked: 0.1 + 1.0 + min(4.0, 1) = 2.1 cores (a stage runs one thread: the edge can use one core, not four)
    # > 2 cores -> cpu_scale 2 / 2.1 = 0.952381; gateway and edge 0.952381 cores = 9523 us per 10 ms (the shortest
    # period); device 0.0952381 cores: 1 ms (the kernel's least quota) per 10.5 ms, the shortest period holding it
    plan = plan_lab(topo, machine_cores=2)
    assert plan.cpu_scale == pytest.approx(2 / 2.1) and plan.demand_cores == pytest.approx(2.1)
    assert [(h.quota_us, h.period_us) for h in plan.hosts] == [(1000, 10500), (9523, 10000), (9523, 10000)]
    assert sum(h.cores for h in plan.hosts) <= 2
    assert all(MIN_PERIOD_US <= h.period_us <= PERIOD_US and h.quota_us >= MIN_QUOTA_US for h in plan.hosts)
    # the ratios between tiers up to one core are kept: gateway / device = 1.0 / 0.1 = 10
    assert plan.hosts[1].cores / plan.hosts[0].cores == pytest.approx(10, rel=1e-3)
    assert any("cpu_scale 0.9524" in n for n in plan.notes)
    # 8 cores hold the 2.1 asked: no scaling, device 0.1 core = 1000 us of 10000
    roomy = plan_lab(topo, machine_cores=8)
    assert roomy.cpu_scale == 1.0 and [h.cores for h in roomy.hosts] == [0.1, 1.0, 1.0]
    # 2 cores per speed: 0.2 + 1 + 1 = 2.2 cores asked on 2 -> 0.909091; device 0.2 x 0.909091 = 0.1818 cores = 1818 us of 10000
    assert plan_lab(topo, machine_cores=2, cores_per_speed=2).hosts[0].quota_us == 1818
    # a grouped host gets its nodes' cores added up: smart_city on 2 cores, 3 cameras of speed 0.08:
    # asked 16 x 0.08 + 4 x 0.8 + min(6, 1) = 5.48 cores -> scale 2 / 5.48; 3 x 0.08 x 0.364964 = 0.0876 cores
    city = plan_lab(Topology.load("smart_city"), machine_cores=2, max_hosts=8)
    assert city.host("device-g0").cores == pytest.approx(3 * 0.08 * 2 / 5.48, rel=1e-3)
    # under the kernel's 1 ms minimum even over the longest period: raised to it, and said
    tiny = plan_lab(_topology("- {name: d, speed: 0.001}\n- {name: e, speed: 1}", "- {from: d, to: e, bandwidth: 1 Mbit/s}"), 1)
    assert (tiny.hosts[0].quota_us, tiny.hosts[0].period_us) == (MIN_QUOTA_US, PERIOD_US) and any(
        "kernel's minimum" in n for n in tiny.notes
    )


def test_tiers_without_speed_and_bad_names_are_refused():
    gflops = _topology("- {name: d, gflops: 5}\n- {name: e, speed: 1}", "- {from: d, to: e, bandwidth: 1 Mbit/s}")
    with pytest.raises(LabError, match=r"tiers\[0\] 'd' gives gflops, not speed.*add 'speed:'"):
        plan_lab(gflops, 2)
    with pytest.raises(LabError, match="lab prefix 'TP_'"):
        plan_lab(Topology.load("three_tier"), 2, prefix="TP_")
    with pytest.raises(LabError, match="inside 198.18.0.0/15"):
        plan_lab(Topology.load("three_tier"), 2, network="10.0.0.0/16")


def test_the_plan_round_trips_through_json():
    plan = plan_lab(Topology.load("smart_city"), machine_cores=2, max_hosts=8)
    assert LabPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


def test_the_lab_topology_points_every_node_at_its_host_and_loads(tmp_path):
    topo = Topology.load("smart_city")
    plan = plan_lab(topo, machine_cores=2, max_hosts=8)
    lab, text = lab_topology(topo, plan, tmp_path / "id_ed25519", tmp_path / "state.json", netem=False)
    (tmp_path / "lab.yaml").write_text(text)
    loaded = Topology.load(tmp_path / "lab.yaml")
    assert loaded.tiers == topo.tiers and loaded.links == topo.links and loaded.sources == topo.sources
    assert set(loaded.hosts) == {n for t in topo.path for n in t.node_names()}
    host = loaded.hosts["device-4"]
    assert (host.address, host.user, host.port, host.key) == (plan.host_of("device-4").address, "root", 22, str(tmp_path / "id_ed25519"))
    assert loaded.lab.cpu_scale == pytest.approx(plan.cpu_scale, rel=1e-5) and loaded.lab.groups == plan.groups()
    assert "no netem in this kernel" in text


@pytest.mark.parametrize("version", [1, 2])
def test_quotas_are_written_where_each_cgroup_version_reads_them(tmp_path, version):
    from runtime.lab.netns import Cgroups

    cgroups = Cgroups(version, tmp_path)  # a folder stands in for the controller's mount
    cgroups.create("tp-lab", None, PERIOD_US)
    cgroups.create("tp-lab/device-0", 3921, PERIOD_US)
    files = {p.relative_to(tmp_path).as_posix(): p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    if version == 1:  # cpu.cfs_quota_us of cpu.cfs_period_us
        assert files == {"tp-lab/device-0/cpu.cfs_period_us": "100000", "tp-lab/device-0/cpu.cfs_quota_us": "3921"}
    else:  # cpu.max "QUOTA PERIOD", the controller handed down by each parent
        assert files == {
            "cgroup.subtree_control": "+cpu",
            "tp-lab/cgroup.subtree_control": "+cpu",
            "tp-lab/device-0/cpu.max": "3921 100000",
        }
    assert cgroups.quota("tp-lab/device-0") == (3921, PERIOD_US) and cgroups.quota("tp-lab/gone") is None


def test_the_cli_plans_without_root_and_stays_lean(capsys):
    assert main(["lab", "up", "three_tier", "--dry-run"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "198.18.1.1" in out and "cpu_scale 0.9524" in out
    for argv in (["lab", "--help"], ["lab", "up", "smart_city", "--dry-run"]):
        result, text = _probe(*argv)
        assert result["code"] == 0, text
        assert result["heavy"] == [], f"`tierpipe {' '.join(argv)}` imported {result['heavy']}"


def test_a_user_who_is_not_root_is_told_so(monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["lab", "status"]) == 2
    assert "tierpipe lab status: needs root" in " ".join(capsys.readouterr().out.split())


# ------------------------------------------------------------------ a real lab, as root
PREFIX, NETWORK = "tpt-", "198.19.16.0/20"  # not the default tp- / 198.18: a user's own lab stays untouched


def _leftovers(directory: Path) -> list[str]:
    return leftovers(directory, PREFIX, NETWORK)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    directory = tmp_path_factory.mktemp("lab")
    out = directory.parent / "lab.yaml"
    argv = ["lab", "up", "three_tier", "--prefix", PREFIX, "--network", NETWORK, "--dir", str(directory), "--out", str(out)]
    assert main(argv) == 0
    yield directory, out, Topology.load(out)
    main(["lab", "down", "--dir", str(directory), "--purge-keys"])  # after a failure too; idempotent


@root_only
def test_each_host_is_a_namespace_that_reaches_its_parent_over_tcp(lab):
    _, _, topo = lab
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for node in ("device-0", "gateway-0", "edge-0"):
        assert f"{PREFIX}{node}" in names
    for child, parent in (("device-0", "gateway-0"), ("gateway-0", "edge-0"), ("device-0", "edge-0")):
        address = topo.hosts[parent].address
        code = f"import socket; s = socket.create_connection(({address!r}, 22), timeout=5); print(s.recv(64).decode().strip())"
        assert _in_netns(f"{PREFIX}{child}", code).startswith("SSH-2.0-"), f"{child} cannot reach {parent}'s sshd"


@root_only
def test_links_carry_a_tbf_at_the_topology_rate_both_ways(lab):
    _, _, topo = lab
    for i, (child, parent) in enumerate((("device-0", "gateway-0"), ("gateway-0", "edge-0"))):
        mbit = topo.links[i].bandwidth_mbps  # 50, then 500 Mbit/s
        for dev, netns in ((f"{PREFIX}{i}u", child), (f"{PREFIX}{i}d", parent)):
            shown = subprocess.run(["tc", "-n", f"{PREFIX}{netns}", "qdisc", "show", "dev", dev], capture_output=True, text=True).stdout
            assert "qdisc tbf" in shown and f"rate {mbit:g}Mbit" in shown, shown


@root_only
def test_a_shaped_link_carries_its_rate_and_follows_lab_shape(lab):
    directory, _, topo = lab
    gateway = topo.hosts["gateway-0"].address
    # the gateway counts what arrives from the device over the 50 Mbit/s link: 4 MB take ~0.67 s
    mbps = measure_mbps(f"{PREFIX}device-0", f"{PREFIX}gateway-0", gateway)
    assert mbps == pytest.approx(topo.links[0].bandwidth_mbps, rel=0.25)
    # a real change of the link, as `tierpipe lab shape` makes it: 10 Mbit/s is then measured (2 MB take ~1.6 s)
    assert main(["lab", "shape", "device-0", "10 Mbit/s", "--dir", str(directory)]) == 0
    try:
        assert measure_mbps(f"{PREFIX}device-0", f"{PREFIX}gateway-0", gateway, 2_000_000) == pytest.approx(10, rel=0.25)
    finally:
        assert main(["lab", "shape", "device-0", "50 Mbit/s", "--dir", str(directory)]) == 0


@root_only
def test_over_ssh_daemons_run_free_and_a_stage_joining_its_hosts_cgroup_gets_the_tiers_quota(lab):
    _, _, topo = lab
    ssh = ["ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]
    # a busy loop for 1 s of wall time, over ssh, with the host's env (as `cluster up` starts Ray): before joining, it
    # runs in the daemons' cgroup, unthrottled; after join_node_cgroup, on the device (0.1 x cpu_scale = 0.095 cores
    # on 2 cores) it gets ~0.1 s of CPU in 1 s; unlimited, it would get up to 1 s
    code = (
        "import os, time\nfrom runtime.nodecpu import join_node_cgroup\n"
        "print('before', open('/proc/self/cgroup').read().replace('\\n', ' '))\n"
        "print('joined', join_node_cgroup())\n"
        "print('after', open('/proc/self/cgroup').read().replace('\\n', ' '))\n"
        "c0 = sum(os.times()[:2])\nt = time.monotonic()\nwhile time.monotonic() - t < 1: pass\nprint('cpu', sum(os.times()[:2]) - c0)"
    )
    for node in ("device-0", "edge-0"):
        host = topo.hosts[node]
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in host.env.items())
        command = f"cd {shlex.quote(os.getcwd())} && {env} PYTHONPATH=. {sys.executable} -c {shlex.quote(code)}"
        done = subprocess.run([*ssh, "-i", host.key, f"root@{host.address}", command], capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, done.stderr
        lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
        assert f"/{PREFIX}lab/daemons" in lines["before"], done.stdout
        assert lines["joined"].endswith(f"/{PREFIX}lab/{node}") and f"/{PREFIX}lab/{node}" in lines["after"], done.stdout
        cpu_s = float(lines["cpu"])
        if node == "device-0":  # (no lower bound on the edge: another job on this machine may take its cores)
            assert cpu_s < 0.25, f"{node} got {cpu_s:.2f} s of CPU in 1 s: its quota is not in force"
    if len(os.sched_getaffinity(0)) == 2:
        assert topo.lab.cpu_scale == pytest.approx(2 / 2.1, rel=1e-4)


@root_only
def test_a_second_lab_on_the_same_names_is_refused_before_anything_is_made(lab, tmp_path, capsys):
    argv = ["lab", "up", "three_tier", "--prefix", PREFIX, "--network", NETWORK, "--dir", str(tmp_path / "other")]
    assert main(argv) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert f"namespace {PREFIX}device-0" in out and "already exist" in out
    assert not (tmp_path / "other").exists()


@root_only
def test_status_lists_every_host_and_sees_a_dead_sshd(lab, capsys):
    directory, _, _ = lab
    assert main(["lab", "status", "--dir", str(directory)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert out.count("up (pid") == 3 and "netem:" in out
    from runtime.lab.state import LabState
    from runtime.lab.status import host_status

    rows = {r.host: r for r in host_status(LabState.load(directory / "state.json"))}
    # no stage runs yet: sshd is in the daemons' cgroup, the host's own holds only stages
    assert rows["device-0"].link == "tbf 50Mbit up, tbf 50Mbit down -> gateway-0" and rows["device-0"].procs == 0
    state = json.loads((directory / "state.json").read_text())
    sshd = next(m["pid"] for m in state["made"] if m["name"] == "sshd of device-0")
    os.kill(sshd, 9)
    from runtime.lab.netns import process_start

    deadline = time.monotonic() + 5
    while process_start(sshd) is not None and time.monotonic() < deadline:  # gone, or a zombie
        time.sleep(0.05)
    assert main(["lab", "status", "--dir", str(directory)]) == 1
    assert "dead" in capsys.readouterr().out


@root_only
def test_down_removes_everything_the_lab_made_and_is_idempotent(lab, capsys):
    directory, _, _ = lab
    assert _leftovers(directory)  # the lab is there
    assert main(["lab", "down", "--dir", str(directory)]) == 0
    assert _leftovers(directory) == []
    assert not (directory / "state.json").exists() and (directory / "keys").exists()  # keys are kept
    assert main(["lab", "down", "--dir", str(directory)]) == 0
    assert "nothing to remove" in capsys.readouterr().out


@root_only
def test_an_up_that_fails_half_way_removes_what_it_made(tmp_path, monkeypatch):
    from runtime.lab import build

    started = []

    def fail_on_second(state, cgroups, directory, host):
        if started:
            raise LabError("sshd refused to start (a test)")
        started.append(host.name)
        real(state, cgroups, directory, host)

    real = build._start_sshd
    monkeypatch.setattr(build, "_start_sshd", fail_on_second)
    plan = plan_lab(Topology.load("three_tier"), machine_cores=2, prefix=PREFIX, network=NETWORK)
    with pytest.raises(LabError, match="a test"):
        build.lab_up(plan, tmp_path)
    assert started == ["device-0"] and _leftovers(tmp_path) == []
    assert not (tmp_path / "state.json").exists()


def test_a_missing_sshd_privilege_separation_directory_is_made_and_left_for_every_sshd(tmp_path, monkeypatch):
    """A machine where openssh-server was installed but never started (a fresh container) has no /run/sshd."""
    from runtime.lab import build

    privsep = tmp_path / "run" / "sshd"
    fake = tmp_path / "sshd"
    fake.write_text(f'#!/bin/sh\n[ -d {privsep} ] || echo "Missing privilege separation directory: {privsep}" >&2\n')
    fake.chmod(0o755)
    monkeypatch.setattr(build, "sshd_path", lambda: str(fake))
    old = os.umask(0o077)
    try:
        build._privsep(tmp_path / "sshd_config")
    finally:
        os.umask(old)
    assert privsep.is_dir() and (privsep.stat().st_mode & 0o777) == 0o755
    build._privsep(tmp_path / "sshd_config")  # there now: nothing to do
    assert privsep.is_dir()
