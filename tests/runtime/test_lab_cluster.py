"""A plan measured on a real lab, as a user runs it (root, namespaces, sshd; skipped elsewhere, saying why):
`lab up --out LAB.yaml`, `cluster up LAB.yaml` (Ray over ssh into every host), `profile --address` (every op
timed inside each tier's CPU cgroup, then the model run whole on each tier to calibrate), `partition --profiles`,
`run --emulate off` (stages in their hosts' cgroups, nothing lost), then `cluster down` and `lab down`, leaving nothing behind.

The commands run as subprocesses: a driver on a lab joins the head host's network namespace, which a
test process must not do to itself.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from partition import CostModel, Plan, Topology, capture
from partition.zoo import get_model
from runtime.calibrate import SCALE_RANGE, fit_line
from tests.runtime.labtools import leftovers, root_only

PREFIX, NETWORK, PORT = "tpc-", "198.19.32.0/20", 6391  # not the user's tp- / 198.18, nor test_lab's
MODEL = ["resnet18", "--input-shape", "1,3,64,64"]
ROOT = Path(__file__).resolve().parents[2]


def _tierpipe(*argv: str, timeout_s: float = 300, check: bool = True) -> str:
    done = subprocess.run([sys.executable, "-m", "runtime.cli", *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    if check:
        assert done.returncode == 0, f"tierpipe {' '.join(argv)}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("labcluster")
    lab_dir, lab_yaml = folder / "lab", folder / "lab.yaml"
    _tierpipe("lab", "up", "three_tier", "--prefix", PREFIX, "--network", NETWORK, "--dir", str(lab_dir), "--out", str(lab_yaml))
    try:
        _tierpipe("cluster", "up", str(lab_yaml), "--port", str(PORT))
        topo = Topology.load(lab_yaml)
        head = f"{topo.hosts['edge-0'].address}:{PORT}"
        # every op timed on each tier's node, then two calibration runs a tier, once for the module
        profile = ["profile", *MODEL, "--topology", str(lab_yaml), "--address", head, "--out", str(folder / "profiles.json")]
        _tierpipe(*profile, "--seconds", "1", timeout_s=600)
        yield folder, lab_yaml, topo, head
    finally:  # after a failure too (both are idempotent); after the last test, there is nothing left to stop
        if (lab_dir / "state.json").exists():
            _tierpipe("cluster", "down", str(lab_yaml), check=False)
            _tierpipe("lab", "down", "--dir", str(lab_dir), "--purge-keys", check=False)


@root_only
def test_profiles_are_measured_in_each_tiers_cgroup_and_partition_uses_them(cluster):
    folder, lab_yaml, topo, head = cluster
    profiles = folder / "profiles.json"
    data = json.loads(profiles.read_text())
    graph = capture(*get_model("resnet18", [1, 3, 64, 64]), timing="analytic")
    ops = {n.name for n in graph.nodes}
    for tier in topo.path:
        node = tier.node_names()[0]
        # measured on that tier's node, inside its host's cgroup (the CPU quota of its speed on the lab)
        assert data["_about"]["measured_on"][tier.name]["cgroup"].endswith(f"/{PREFIX}lab/{node}")
        assert set(data[tier.name]) == ops - set(graph.inputs) and all(s >= 0 for s in data[tier.name].values())
    # and each link, from a node of one tier to a node of the next: round trips of three frame sizes, fitted
    links = data["_links"]
    assert set(links) == {"device->gateway", "gateway->edge"}
    for link in links.values():
        assert len(link["transfer_s"]) == 3 and link["call_s"] >= 0 and link["s_per_byte"] >= 0 and link["cpu_s_per_byte"] >= 0
    # the device's 50 Mbit/s binds every frame size (its tbf bucket is 10 ms of the rate, 62.5 KB); the 500 Mbit/s link's
    # bucket (625 KB) passes a single frame of up to 512 KiB at the veth's speed, so its slope may well be nothing
    assert links["device->gateway"]["s_per_byte"] > 0
    # then the whole model and a one-op stage ran on each tier in a real pipeline: the line through the two is the tier's
    calibration = data["_about"]["calibration"]
    for tier in topo.path:
        c = calibration["tiers"][tier.name]
        assert c["measured_s"] > 0 and c["small_measured_s"] > 0 and 0 < c["small_profiled_s"] < c["profiled_s"]
        fit = fit_line((c["profiled_s"], c["measured_s"]), (c["small_profiled_s"], c["small_measured_s"]))
        if fit is not None:  # the tier calibrated (this machine's load decides which branch)
            assert (c["scale"], c["offset_s"]) == fit and data["_calls"][tier.name]["scale"] == c["scale"]
            assert data["_calls"][tier.name]["offset_s"] == c["offset_s"]
            assert SCALE_RANGE[0] <= c["scale"] <= SCALE_RANGE[1]
        else:  # a profile so far off is wrong: the tier is left as profiled, said
            assert c["scale"] is None and "scale" not in data["_calls"][tier.name]
    assert set(calibration["links"]) == {"device->gateway", "gateway->edge"}  # the last run sent the input over both
    # the plan's predicted stage times are the profiled ones: each stage's time is the sum of its ops' measured times
    plan_file = folder / "profiled_plan.json"
    _tierpipe("partition", *MODEL, "--topology", str(lab_yaml), "--profiles", str(profiles), "--out", str(plan_file))
    plan = Plan.load(plan_file)
    cm = CostModel(graph, topo, CostModel.load_profiles(profiles))
    for t, stage in enumerate(plan.stages):
        assert plan.predicted.stage_compute_s[t] == pytest.approx(sum(cm.compute_s(op, t) for op in stage.nodes), rel=1e-6, abs=1e-9)
    for j, (nbytes, seconds) in enumerate(zip(plan.predicted.link_bytes, plan.predicted.link_s)):  # and its links the profiled ones
        assert seconds == pytest.approx(cm.link_latency_s(j) + cm.link_s(j, nbytes), rel=1e-6)


@root_only
def test_a_plan_runs_on_the_lab_without_emulation_with_its_stages_under_their_quotas(cluster):
    folder, lab_yaml, topo, head = cluster
    plan_file, report_file = folder / "plan.json", folder / "report.json"
    # an analytic plan: the same on every run (the profiled one above depends on the machine's load)
    _tierpipe("partition", *MODEL, "--topology", str(lab_yaml), "--pin", "stem=device", "--out", str(plan_file))
    extra = ["--profiles", str(folder / "profiles.json")]
    _tierpipe(
        "run", *MODEL, "--topology", str(lab_yaml), "--plan", str(plan_file), "--address", head, "--emulate", "off",
        "--seconds", "4", "--fps", "5", "--report", str(report_file), *extra,
    )  # fmt: skip
    report = json.loads(report_file.read_text())
    assert report["emulated"] is False and report["frames_delivered"] == report["sent_by_sources"] > 0
    assert report["drops"] == 0 and report["duplicates_dropped"] == 0
    hosts = {n["node"]: n for n in report["nodes"]}
    assert set(hosts) == {"device-0", "gateway-0", "edge-0"}
    for node, row in hosts.items():
        assert row["cgroup"].endswith(f"/{PREFIX}lab/{node}"), f"{node} did not run under its host's quota"
    times = {r["node"]: r for r in report["stage_times"]}
    assert set(times) == set(hosts)
    device = times["device-0"]  # the pinned stem runs there: predicted, profiled (when profiled above) and measured
    assert device["ops"] > 0 and device["measured_s"] > 0 and device["predicted_s"] > 0
    assert device["profiled_s"] > 0
    assert [r["link"] for r in report["link_times"]] == ["device->gateway", "gateway->edge"]


@root_only
def test_cluster_down_and_lab_down_leave_nothing(cluster):
    folder, lab_yaml, topo, _ = cluster
    addresses = {f"--node_ip_address={h.address} " for h in topo.hosts.values()}

    def raylets(ours: bool) -> set[str]:
        lines = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True).stdout.splitlines()
        return {line for line in lines if "raylet/raylet" in line and any(a in line for a in addresses) == ours}

    others = raylets(ours=False)  # the suite's own Ray, another lab's: `cluster down` of this lab leaves them be
    assert len(raylets(ours=True)) == 3
    _tierpipe("cluster", "down", str(lab_yaml))
    assert raylets(ours=True) == set() and others <= raylets(ours=False)
    _tierpipe("lab", "down", "--dir", str(folder / "lab"), "--purge-keys")
    assert leftovers(folder / "lab", PREFIX, NETWORK) == []
