"""The commands a lab runs on this machine: ``ip``, ``tc``, ``sysctl``, ``ssh-keygen``, ``sshd``, and
the cgroup files (v1 ``cpu.cfs_quota_us`` or v2 ``cpu.max``). Every failure is a :class:`LabError`
naming the command and its own error.
"""

from __future__ import annotations

import logging
import os
import platform
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import LabError
from ..nodecpu import cpu_quota

__all__ = [
    "run",
    "try_run",
    "check_machine",
    "sshd_path",
    "Cgroups",
    "find_cgroups",
    "machine_cores",
    "netem_in_kernel",
    "process_start",
    "tc_rate",
]

log = logging.getLogger(__name__)
NETNS_DIR = Path("/run/netns")


def _show(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def try_run(argv: list[str], netns: str | None = None, timeout_s: float = 30.0) -> subprocess.CompletedProcess:
    """Run a command (inside ``netns`` when given); never raises for a non-zero exit."""
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    log.info("lab: %s", _show(argv))
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        return subprocess.CompletedProcess(argv, 127, "", f"{argv[0]}: not found ({exc.strerror})")
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", f"timed out after {timeout_s:g} s")


def run(argv: list[str], netns: str | None = None, fix: str = "") -> str:
    """Run a command and return its stdout.

    Raises:
        LabError: ``lab: `ip link add ...` failed (exit 2): RTNETLINK answers: File exists`` and the fix.
    """
    done = try_run(argv, netns)
    if done.returncode != 0:
        err = " | ".join(line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()) or "no output"
        raise LabError(f"lab: `{_show(list(done.args))}` failed (exit {done.returncode}): {err}" + (f"; {fix}" if fix else ""))
    return done.stdout


def sshd_path() -> str | None:
    found = shutil.which("sshd") or shutil.which("sshd", path="/usr/sbin:/usr/local/sbin:/sbin")
    return str(Path(found).resolve()) if found else None  # sshd refuses to start from a relative path


def check_machine(command: str) -> None:
    """What every lab command needs: Linux, root, ``ip`` and ``tc`` (and for ``up``: sshd, ssh-keygen,
    a root account sshd lets in).

    Raises:
        LabError: naming what is missing and how to get it.
    """
    if platform.system() != "Linux":
        raise LabError(f"tierpipe lab {command}: network namespaces and cgroups are Linux only (this is {platform.system()})")
    if os.geteuid() != 0:
        raise LabError(f"tierpipe lab {command}: needs root (namespaces, veths, tc and cgroups); run it with sudo")
    needs = {"ip": "iproute2", "tc": "iproute2"}
    if command == "up":
        needs["ssh-keygen"] = "openssh-client"
    missing = [f"{tool} (apt-get install {pkg})" for tool, pkg in needs.items() if shutil.which(tool) is None]
    if command == "up" and sshd_path() is None:
        missing.append("sshd (apt-get install openssh-server)")
    if missing:
        raise LabError(f"tierpipe lab {command}: missing {', '.join(missing)}")
    if command == "up":
        try:
            entry = next(line for line in Path("/etc/shadow").read_text().splitlines() if line.startswith("root:"))
        except (OSError, StopIteration):
            return
        if entry.split(":")[1].startswith("!"):
            raise LabError(
                "tierpipe lab up: root's password is locked ('!' in /etc/shadow), and the lab's sshd (without PAM, so that "
                "sessions stay in the node's cgroup) refuses a locked account; `usermod -p '*' root` keeps password login off "
                "and lets keys in"
            )


# ------------------------------------------------------------------ cgroups
@dataclass(frozen=True)
class Cgroups:
    """The cpu controller's hierarchy: v1 (``cpu.cfs_quota_us``) or v2 (``cpu.max``)."""

    version: int
    root: Path  # where the controller is mounted

    def path(self, rel: str) -> Path:
        return self.root / rel

    def create(self, rel: str, quota_us: int | None, period_us: int) -> Path:
        """Make the cgroup (its parents must exist) and set its quota (None: no limit)."""
        path = self.path(rel)
        try:
            path.mkdir()
            if self.version == 2:
                # a v2 child has the cpu controller only when its parent hands it down
                (path.parent / "cgroup.subtree_control").write_text("+cpu")
                if quota_us is not None:
                    (path / "cpu.max").write_text(f"{quota_us} {period_us}")
            elif quota_us is not None:
                (path / "cpu.cfs_period_us").write_text(str(period_us))
                (path / "cpu.cfs_quota_us").write_text(str(quota_us))
        except OSError as exc:
            hint = "check that the cpu controller is writable here"
            if self.version == 2:
                hint += f" (v2: {path.parent} must hold no processes of its own to hand the cpu controller down)"
            raise LabError(f"lab: cannot make cgroup {path} ({exc.strerror}); {hint}") from None
        return path

    def quota(self, rel: str) -> tuple[int | None, int] | None:
        """(quota µs or None for no limit, period µs); None when the cgroup is gone."""
        return cpu_quota(self.path(rel))

    def procs(self, rel: str) -> list[int]:
        try:
            return [int(p) for p in (self.path(rel) / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def add(self, rel: str, pid: int) -> None:
        try:
            (self.path(rel) / "cgroup.procs").write_text(str(pid))
        except OSError as exc:
            raise LabError(f"lab: cannot move pid {pid} into cgroup {self.path(rel)} ({exc.strerror})") from None

    def membership(self, pid: int) -> str | None:
        """The cgroup of ``pid`` in this hierarchy, as ``/proc/PID/cgroup`` says it (``/tp-lab/device-0``)."""
        try:
            lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        except OSError:
            return None
        for line in lines:
            _, controllers, where = line.split(":", 2)
            if (self.version == 2 and controllers == "") or (self.version == 1 and "cpu" in controllers.split(",")):
                return where
        return None


def find_cgroups() -> Cgroups:
    """The cpu controller of this machine: a v1 hierarchy mounted with ``cpu``, else the v2 one.

    Raises:
        LabError: neither is mounted with a cpu controller.
    """
    v2 = None
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, where, kind, options, *_ = line.split()
        if kind == "cgroup" and "cpu" in options.split(","):
            return Cgroups(1, Path(where))
        if kind == "cgroup2" and v2 is None:
            v2 = Path(where)
    if v2 is not None:
        controllers = (v2 / "cgroup.controllers").read_text().split() if (v2 / "cgroup.controllers").exists() else []
        if "cpu" in controllers:
            return Cgroups(2, v2)
    raise LabError(
        "lab: no cgroup cpu controller is mounted (no v1 'cpu' hierarchy, no v2 with 'cpu' in cgroup.controllers); "
        "mount one (e.g. `mount -t cgroup -o cpu cgroup /sys/fs/cgroup/cpu`)"
    )


def machine_cores() -> float:
    """The cores this process may use: its CPU affinity, or less when its own cgroup has a quota (a container)."""
    cores = float(len(os.sched_getaffinity(0)))
    try:
        cgroups = find_cgroups()
    except (LabError, OSError):
        return cores
    mine = cgroups.membership(os.getpid())
    limit = cgroups.quota(mine.lstrip("/")) if mine else None
    if limit and limit[0] is not None:
        cores = min(cores, limit[0] / limit[1])
    return cores


# ------------------------------------------------------------------ processes, tc
def process_start(pid: int) -> int | None:
    """The start time of a live process (clock ticks since boot): with the pid, it names one process
    even after the pid is reused. None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # "pid (comm) state ppid ...": comm may hold spaces
    return None if fields[0] in ("Z", "X") else int(fields[19])


def netem_in_kernel() -> bool:
    """Whether this kernel has netem, loaded or as a module to load (``lab up`` also tries it in its own namespace)."""
    if Path("/sys/module/sch_netem").exists():
        return True
    release = Path("/lib/modules") / platform.release()
    if (release / "modules.builtin").exists() and "sch_netem" in (release / "modules.builtin").read_text():
        return True
    return any(release.glob("kernel/net/sched/sch_netem.ko*")) if release.exists() else False


def tc_rate(qdisc_line: str) -> str | None:
    """``50Mbit`` from ``qdisc tbf 8001: root refcnt 2 rate 50Mbit burst 62500b lat 50ms``."""
    words = qdisc_line.split()
    return words[words.index("rate") + 1] if "rate" in words else None
