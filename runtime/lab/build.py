"""``lab up``: make what a :class:`LabPlan` describes, recording each thing before it is made.

Order: keys, cgroups, namespaces, the lab bridge, one veth pair per host, addresses and routes,
shaping (tbf, under netem where the kernel has it), then one sshd per host, started inside the
lab's daemons cgroup (the launching shell joins it, then execs ``nsenter --net=/run/netns/NS sshd``, so every
session and process sshd ever starts is found there by ``lab down``). Each host's own cgroup holds
its quota; a stage joins it once started (``runtime/nodecpu.py``), so Ray's daemons start at full
speed and the stages run at the tier's. When any step
fails, everything already made is removed again and the error says which command failed.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

from ..errors import LabError
from .netns import Cgroups, check_machine, find_cgroups, process_start, run, sshd_path, try_run
from .plan import PERIOD_US, LabPlan
from .state import LabState, Made, lab_dir
from .teardown import teardown

__all__ = ["lab_up", "key_paths", "wait_for_ssh"]

SSH_PORT = 22


def key_paths(directory: Path) -> dict[str, Path]:
    keys = directory / "keys"
    return {
        "client": keys / "id_ed25519",
        "host": keys / "host_ed25519",
        "authorized": keys / "authorized_keys",
        "known_hosts": keys / "known_hosts",  # every host's address with the lab's host key: ssh checks it strictly
    }


def lab_up(plan: LabPlan, directory: str | Path | None = None) -> LabState:
    """Make the lab; returns its recorded state.

    Raises:
        LabError: not root or a tool missing, a lab already recorded in ``directory``, a name or
            address already taken, or the command that failed (after removing what was made).
    """
    check_machine("up")
    directory = lab_dir(directory)
    path = directory / "state.json"
    old = LabState.load(path)
    if old is not None:
        raise LabError(
            f"a lab is already up ({path}: {len(old.plan.hosts)} hosts for {old.plan.topology}); "
            "`tierpipe lab down` first, or give another --dir, --prefix and --network"
        )
    cgroups = find_cgroups()
    _check_free(plan, cgroups)
    state = LabState(path, plan, cgroups.version, str(cgroups.root))
    # the folders made here (~/.tierpipe too, on a first lab) are removed by `down --purge-keys` once empty
    state.kept += [str(p) for p in (directory, *directory.parents) if not p.exists()]
    directory.mkdir(parents=True, exist_ok=True)
    state.save()
    try:
        _make(state, cgroups, directory)
    except BaseException as exc:
        try:
            teardown(state)
        except LabError as undo:  # say both: what failed, and what is left of the lab
            raise LabError(f"{exc}\n{undo}") from None
        raise
    state.up = True
    state.save()
    return state


def _check_free(plan: LabPlan, cgroups: Cgroups) -> None:
    taken = [f"namespace {h.netns}" for h in plan.hosts if Path(f"/run/netns/{h.netns}").exists()]
    links = [plan.bridge] + [h.downlink for h in plan.children(None)]
    taken += [f"link {name}" for name in links if try_run(["ip", "link", "show", "dev", name]).returncode == 0]
    taken += [f"cgroup {cgroups.path(plan.cgroup_root)}"] if cgroups.path(plan.cgroup_root).exists() else []
    routes = run(["ip", "-4", "route", "show", "root", plan.network]).strip()
    taken += [f"routes into {plan.network} ({routes.splitlines()[0]})"] if routes else []
    if taken:
        raise LabError(
            f"lab up: {', '.join(taken)} already exist on this machine (another lab, or something else); "
            "`tierpipe lab down` removes a recorded lab, or pick another --prefix and --network"
        )


def _make(state: LabState, cgroups: Cgroups, directory: Path) -> None:
    plan = state.plan
    _keys(state, directory)
    state.add(Made("cgroup", plan.cgroup_root))
    cgroups.create(plan.cgroup_root, None, PERIOD_US)
    state.add(Made("cgroup", plan.daemons_cgroup))
    cgroups.create(plan.daemons_cgroup, None, PERIOD_US)
    for h in plan.hosts:
        state.add(Made("cgroup", h.cgroup))
        cgroups.create(h.cgroup, h.quota_us, h.period_us)
    for h in plan.hosts:
        state.add(Made("netns", h.netns))
        run(["ip", "netns", "add", h.netns])
        run(["ip", "-n", h.netns, "link", "set", "lo", "up"])
        run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], netns=h.netns)  # it forwards for the hosts below it
    state.add(Made("link", plan.bridge))
    run(["ip", "link", "add", plan.bridge, "type", "bridge"])
    run(["ip", "addr", "add", f"{plan.root_address}/32", "dev", plan.bridge])
    run(["ip", "link", "set", plan.bridge, "up"])
    for h in plan.hosts:
        parent = plan.host(h.parent) if h.parent else None
        far = parent.netns if parent else None
        state.add(Made("link", h.uplink, h.netns))
        state.add(Made("link", h.downlink, far))
        run(["ip", "link", "add", h.uplink, "netns", h.netns, "type", "veth", "peer", "name", h.downlink, *(["netns", far] if far else [])])
        run(["ip", "-n", h.netns, "addr", "add", f"{h.address}/32", "dev", h.uplink])
        run(["ip", "-n", h.netns, "link", "set", h.uplink, "up"])
        if parent:
            run(["ip", "-n", far, "addr", "add", f"{parent.address}/32", "dev", h.downlink])
            run(["ip", "-n", far, "link", "set", h.downlink, "up"])
        else:
            run(["ip", "link", "set", h.downlink, "master", plan.bridge, "up"])
    for h in plan.hosts:
        for dst, dev, via in plan.routes(h.name):
            run(["ip", "-n", h.netns, "route", "add", dst, "dev", dev, *(["via", via] if via else [])])
    for dst, dev, via in plan.routes(None):
        state.add(Made("route", dst))
        run(["ip", "route", "add", dst, "dev", dev, *(["via", via] if via else [])])
    state.netem = _probe_netem(plan.hosts[0].netns)
    state.save()
    for h in plan.hosts:
        if h.shape is None:
            continue
        parent = plan.host(h.parent)
        for dev, ns in ((h.uplink, h.netns), (h.downlink, parent.netns)):
            if state.netem:
                run(["tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "handle", "1:", *h.shape.netem_args()])
                run(["tc", "-n", ns, "qdisc", "add", "dev", dev, "parent", "1:1", "handle", "10:", *h.shape.tbf_args()])
            else:
                run(["tc", "-n", ns, "qdisc", "add", "dev", dev, "root", *h.shape.tbf_args()])
    for h in plan.hosts:
        _start_sshd(state, cgroups, directory, h)
    wait_for_ssh(plan)


def _keys(state: LabState, directory: Path) -> None:
    """The lab's client key, host key and authorized_keys: made once, kept across labs."""
    keys = key_paths(directory)
    folder = keys["client"].parent
    if not folder.exists():
        state.kept.append(str(folder))
        folder.mkdir(mode=0o700, parents=True)
    for kind in ("client", "host"):
        if not keys[kind].exists():
            state.kept += [str(keys[kind]), f"{keys[kind]}.pub"]
            state.save()
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"tierpipe-lab-{kind}", "-f", str(keys[kind])])
    pub = Path(f"{keys['client']}.pub").read_text()
    if not keys["authorized"].exists() or keys["authorized"].read_text() != pub:
        state.kept.append(str(keys["authorized"]))
        keys["authorized"].write_text(pub)
        keys["authorized"].chmod(0o600)
    host_key = Path(f"{keys['host']}.pub").read_text().split()[:2]
    if not keys["known_hosts"].exists():
        state.kept.append(str(keys["known_hosts"]))
    keys["known_hosts"].write_text("".join(f"{h.address} {' '.join(host_key)}\n" for h in state.plan.hosts))
    state.save()


def _probe_netem(netns: str) -> bool:
    """Whether this kernel has netem: tried on the loopback of the lab's own first namespace."""
    done = try_run(["tc", "-n", netns, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"])
    if done.returncode == 0:
        try_run(["tc", "-n", netns, "qdisc", "del", "dev", "lo", "root"])
    return done.returncode == 0


_SSHD_CONFIG = """\
# written by `tierpipe lab up`: the sshd of lab host {name} ({nodes}), namespace {netns}
ListenAddress {address}
Port {port}
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
# no PAM: a PAM session (pam_systemd) may move a login out of the node's cgroup
UsePAM no
# the lab folder may sit under a world-writable one (/tmp): its files are the lab's own
StrictModes no
PrintMotd no
Subsystem sftp internal-sftp
"""


def _start_sshd(state: LabState, cgroups: Cgroups, directory: Path, h) -> None:
    folder = directory / "hosts" / h.name
    state.add(Made("dir", str(folder)))
    folder.mkdir(parents=True, exist_ok=True)
    config, pid_file, log_file = folder / "sshd_config", folder / "sshd.pid", folder / "sshd.log"
    for f in (config, pid_file, log_file):
        state.add(Made("file", str(f)))
    keys = key_paths(directory)
    config.write_text(
        _SSHD_CONFIG.format(
            name=h.name,
            nodes=", ".join(h.nodes),
            netns=h.netns,
            address=h.address,
            port=SSH_PORT,
            host_key=keys["host"],
            pid_file=pid_file,
            authorized=keys["authorized"],
        )
    )
    _privsep(config)
    daemons = state.plan.daemons_cgroup
    procs = cgroups.path(daemons) / "cgroup.procs"
    # the shell joins the daemons' cgroup, then becomes `nsenter`, which becomes sshd: what it
    # starts is the lab's (`lab down` finds it there) and unthrottled; stages join h.cgroup themselves
    join = 'echo $$ > "$1" && shift && exec "$@"'
    # nsenter joins the network namespace only: `ip netns exec` would also remount /sys, hiding
    # /sys/fs/cgroup from every process sshd starts, and a stage could not join its host's cgroup
    net = f"--net=/run/netns/{h.netns}"
    run(["sh", "-c", join, "sh", str(procs), "nsenter", net, sshd_path(), "-f", str(config), "-E", str(log_file)])
    pid = _read_pid(pid_file, log_file)
    state.add(Made("process", f"sshd of {h.name}", pid=pid, start=process_start(pid)))
    if cgroups.membership(pid) != f"/{daemons}":
        cgroups.add(daemons, pid)


def _privsep(config: Path) -> None:
    """sshd's privilege separation directory (``/run/sshd``), made where it is missing, as the openssh-server service
    would: a machine where the package was installed but its service never started (a fresh container, CI) has
    none. ``lab down`` leaves it: every sshd on the machine needs it, not only the lab's."""
    check = try_run([sshd_path(), "-t", "-f", str(config)])
    found = re.search(r"Missing privilege separation directory: (\S+)", check.stdout + check.stderr)
    if found:
        folder = Path(found.group(1))
        folder.mkdir(mode=0o755, parents=True, exist_ok=True)
        folder.chmod(0o755)  # root's, not group- or world-writable: what sshd asks of it, whatever the umask


def _read_pid(pid_file: Path, log_file: Path, timeout_s: float = 10.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            time.sleep(0.05)
    log = log_file.read_text().strip().splitlines()[-3:] if log_file.exists() else []
    raise LabError(f"lab: sshd wrote no pid file {pid_file} within {timeout_s:g} s; its log says: {' | '.join(log) or 'nothing'}")


def wait_for_ssh(plan: LabPlan, timeout_s: float = 20.0) -> None:
    """Every host's sshd accepts a TCP connection from this (the root) namespace, across the lab's links.

    Raises:
        LabError: naming the hosts that did not answer.
    """
    deadline = time.monotonic() + timeout_s
    waiting = list(plan.hosts)
    while waiting and time.monotonic() < deadline:
        waiting = [h for h in waiting if not tcp_open(h.address, SSH_PORT)]
        if waiting:
            time.sleep(0.2)
    if waiting:
        raise LabError(
            f"lab: sshd of {', '.join(f'{h.name} ({h.address})' for h in waiting)} does not answer on port {SSH_PORT} "
            f"within {timeout_s:g} s; its log is under hosts/<host>/sshd.log in the lab folder"
        )


def tcp_open(address: str, port: int, timeout_s: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout_s):
            return True
    except OSError:
        return False
