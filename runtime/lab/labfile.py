"""``lab up --out LAB.yaml``: the input topology with ``hosts:`` pointing at the lab, and a ``lab:``
section saying how the hosts were made (CPU scale, groups, netem), so that ``tierpipe cluster up
LAB.yaml`` launches Ray into the lab over ssh with the lab's key."""

from __future__ import annotations

import datetime
import math
import shutil
import sys
from pathlib import Path

import yaml

from partition.topology import Topology

from ..nodecpu import NODE_CGROUP_ENV
from .plan import LabPlan

__all__ = ["lab_topology", "ray_executable"]


def ray_executable() -> str:
    """The ``ray`` beside this Python (a login over ssh has a short PATH; a pyenv shim needs pyenv's)."""
    beside = Path(sys.executable).parent / "ray"
    if beside.exists():
        return str(beside)
    return shutil.which("ray") or "ray"


def lab_topology(
    topo: Topology, plan: LabPlan, key: Path, state: Path, netem: bool, cgroup_root: str = "/sys/fs/cgroup/cpu"
) -> tuple[Topology, str]:
    """The lab's topology and its YAML text (checked to load back the same).

    Every node gets its host's address, ``user: root``, port 22, the lab's private ``key`` and
    ``known_hosts`` (the lab's host key at every address: a new lab is checked, not trusted on first use), its
    ``ray`` executable, ``cpus``: its quota rounded up to whole cores (at least 1), which Ray
    schedules with, and ``env``: ``TIERPIPE_NODE_CGROUP``, the host's cgroup under ``cgroup_root``
    that a stage joins to run at the tier's speed. Nodes of a grouped host share its address.
    """
    hosts = {}
    for h in plan.hosts:
        for node in h.nodes:
            hosts[node] = {
                "address": h.address,
                "user": "root",
                "port": 22,
                "key": str(key),
                "known_hosts": str(key.parent / "known_hosts"),
                "cpus": max(1, math.ceil(h.cores / len(h.nodes) - 1e-9)),
                "ray": ray_executable(),
                "env": {NODE_CGROUP_ENV: str(Path(cgroup_root) / h.cgroup)},
            }
    lab = {
        "machine_cores": plan.machine_cores,
        "cores_per_speed": plan.cores_per_speed,
        "cpu_scale": round(plan.cpu_scale, 6),
        "groups": plan.groups(),
        "netem": netem,
        "state": str(state),
    }
    data = topo.model_dump(by_alias=True, exclude={"source_file"}, exclude_none=True)
    data.update(hosts=hosts, lab=lab)
    source = topo.source_file or topo.name
    lab_topo = Topology.from_dict(data, source=f"the lab topology of {source}")
    head = [
        f"# written by `tierpipe lab up {source}` on {datetime.datetime.now().isoformat(timespec='seconds')}:",
        f"# the tiers, links and sources of {source}; hosts: the lab's namespaces on this machine.",
        f"# CPU quotas: min(speed x {plan.cores_per_speed:g}, 1) core x cpu_scale {plan.cpu_scale:.4f}; the tiers keep their nominal speed "
        "and plans for this file predict them at their quotas (at most one core: a stage runs one thread).",
    ]
    if not netem:
        head.append("# no netem in this kernel: links are shaped to their bandwidth only; latency and loss are not applied.")
    if plan.grouped:
        head.append("# nodes were grouped: lab.groups says which nodes share a host (and its address);")
        head.append("# `tierpipe cluster up` runs one Ray node per host (labelled tier-host=<address>); its nodes' actors go there.")
    text = "\n".join(head) + "\n" + yaml.safe_dump(data, sort_keys=False)
    return lab_topo, text
