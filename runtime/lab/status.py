"""``lab status``: what the recorded lab looks like now, read from the machine (not from the plan):
each host's namespace, address, sshd (alive and answering), CPU quota and the processes in its
cgroup, each link's qdisc and rate, and whether this kernel has netem."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .build import SSH_PORT, tcp_open
from .netns import Cgroups, netem_in_kernel, process_start, tc_rate, try_run
from .plan import span
from .state import LabState

__all__ = ["HostStatus", "host_status", "netem_line"]


@dataclass(frozen=True)
class HostStatus:
    host: str
    tier: str
    nodes: str
    address: str
    netns: bool
    sshd: str  # "up (pid 123)", "dead", "pid 123 alive, port 22 closed"
    quota: str  # "0.039 cores (3922/100000 us)"
    procs: int
    link: str  # "tbf 50Mbit up, tbf 50Mbit down -> gateway-0", "unshaped, to this machine"

    @property
    def ok(self) -> bool:
        return self.netns and self.sshd.startswith("up")


def _qdisc(dev: str, netns: str | None) -> str:
    where = ["-n", netns] if netns else []
    done = try_run(["tc", *where, "qdisc", "show", "dev", dev])
    if done.returncode != 0:
        return "missing"
    kinds = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("qdisc ")]
    rates = [tc_rate(line) for line in done.stdout.splitlines() if line.startswith("qdisc tbf")]
    return "+".join(k for k in kinds if k in ("netem", "tbf")) + (f" {rates[0]}" if rates and rates[0] else "") or "unshaped"


def host_status(state: LabState) -> list[HostStatus]:
    plan = state.plan
    cgroups = Cgroups(state.cgroup_version, Path(state.cgroup_root))
    sshd = {m.name.removeprefix("sshd of "): m for m in state.made if m.kind == "process"}
    rows = []
    for h in plan.hosts:
        exists = Path(f"/run/netns/{h.netns}").exists()
        procs = len(cgroups.procs(h.cgroup))  # the stages running at the tier's quota (sshd and Ray are in the daemons' cgroup)
        rec = sshd.get(h.name)
        if rec is None or process_start(rec.pid) != rec.start:
            ssh = "dead" if rec else "not started"
        else:
            ssh = f"up (pid {rec.pid})" if tcp_open(h.address, SSH_PORT, 0.5) else f"pid {rec.pid} alive, port {SSH_PORT} closed"
        quota = cgroups.quota(h.cgroup)
        if quota is None:
            qtext = "cgroup missing"
        elif quota[0] is None:
            qtext = "no limit"
        else:
            qtext = f"{quota[0] / quota[1]:.3g} cores ({quota[0]}/{quota[1]} us)"
        if h.parent is None:
            link = "unshaped, to this machine"
        elif exists:
            up, down = _qdisc(h.uplink, h.netns), _qdisc(h.downlink, plan.host(h.parent).netns)
            link = f"{up} up, {down} down -> {h.parent}"
        else:
            link = "gone"
        rows.append(HostStatus(h.name, h.tier, span(h.nodes), h.address, exists, ssh, qtext, procs, link))
    return rows


def netem_line(state: LabState | None) -> str:
    """Whether links get latency and loss, or bandwidth only."""
    if state is not None and state.netem:
        return "netem: available; links carry their latency, jitter and loss (netem) and bandwidth (tbf)"
    here = netem_in_kernel()
    return (
        "netem: missing from this kernel (`tc qdisc ... netem` is refused): links are shaped to their bandwidth only (tbf); "
        "latency and loss are not applied, so a run keeps emulating them in-process"
        if not here
        else "netem: in this kernel but not used by this lab"
    )
