"""``lab down``: remove exactly what the state file records, newest first within each kind, and nothing else.

Processes go first: each recorded sshd (when its pid still names the process that was started:
same start time), then whatever else runs in the lab's cgroups or namespaces (sessions and Ray
started through ssh: all children of the lab's sshd). Then the cgroups, the namespaces (their veths
and qdiscs go with them), the bridge and its routes, and the files. Anything already gone counts
as removed, so ``down`` can be run again; what could not be removed stays recorded and is named.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

from ..errors import LabError
from .netns import Cgroups, check_machine, process_start, try_run
from .state import KINDS, LabState, Made, lab_dir

__all__ = ["lab_down", "teardown", "stop_ray"]


def lab_down(directory: str | Path | None = None, purge_keys: bool = False) -> list[str]:
    """Remove the lab recorded in ``directory``; returns what was done, one line per kind.

    Raises:
        LabError: not root, or something recorded could not be removed (it stays recorded).
    """
    check_machine("down")
    directory = lab_dir(directory)
    state = LabState.load(directory / "state.json")
    lines = teardown(state) if state else [f"no lab recorded in {directory}: nothing to remove"]
    keys = directory / "keys"
    if purge_keys:
        shutil.rmtree(keys, ignore_errors=True)  # the lab's own keys, whichever up made them
        for item in sorted(state.kept if state else [], key=len, reverse=True):  # folders up made, when empty now
            try:
                Path(item).rmdir()
            except OSError:
                pass
        lines.append(f"removed the lab's keys ({keys})")
    elif keys.exists():
        lines.append(f"kept the lab's keys in {keys} (`lab down --purge-keys` removes them)")
    return lines


def teardown(state: LabState) -> list[str]:
    """Remove what ``state`` records, then the state file.

    Raises:
        LabError: naming what could not be removed; the state file then records just that.
    """
    cgroups = Cgroups(state.cgroup_version, Path(state.cgroup_root))
    by_kind = {kind: [m for m in reversed(state.made) if m.kind == kind] for kind in KINDS}
    left: list[tuple[Made, str]] = []
    lines = []
    killed = _stop_processes(state, cgroups, by_kind["process"])
    lines.append(
        f"stopped {len(killed)} process(es)" + (f": {', '.join(killed[:6])}" + (" ..." if len(killed) > 6 else "") if killed else "")
    )
    for item in by_kind["cgroup"]:
        if not _rmdir_cgroup(cgroups.path(item.name)):
            left.append((item, f"still holds pids {cgroups.procs(item.name)}"))
    for item in by_kind["netns"]:
        if Path(f"/run/netns/{item.name}").exists():
            done = try_run(["ip", "netns", "del", item.name])
            if done.returncode != 0:
                left.append((item, done.stderr.strip()))
    for item in by_kind["link"]:
        if item.netns is not None and not Path(f"/run/netns/{item.netns}").exists():
            continue  # it went with its namespace
        where = ["-n", item.netns] if item.netns else []
        if try_run(["ip", *where, "link", "show", "dev", item.name]).returncode == 0:
            done = try_run(["ip", *where, "link", "del", "dev", item.name])
            if done.returncode != 0 and try_run(["ip", *where, "link", "show", "dev", item.name]).returncode == 0:
                left.append((item, done.stderr.strip()))
    bridge = state.plan.bridge
    for item in by_kind["route"]:
        # only a route through the lab's bridge is the lab's; with the bridge gone, none is left
        if f"dev {bridge}" in try_run(["ip", "-4", "route", "show", item.name]).stdout:
            try_run(["ip", "route", "del", item.name, "dev", bridge])
    for item in by_kind["file"]:
        Path(item.name).unlink(missing_ok=True)
    for item in by_kind["dir"]:
        shutil.rmtree(item.name, ignore_errors=True)
    hosts = state.path.parent / "hosts"
    if hosts.exists() and not any(hosts.iterdir()):
        hosts.rmdir()
    lines.append(
        f"removed {len(by_kind['cgroup'])} cgroup(s), {len(by_kind['netns'])} namespace(s), "
        f"{len(by_kind['link'])} link end(s) (with their qdiscs), {len(by_kind['route'])} route(s), {len(by_kind['file'])} file(s)"
    )
    if left:
        state.made = [m for m, _ in left]
        state.save()
        raise LabError(
            "lab down: could not remove " + "; ".join(f"{m} ({why or 'no reason given'})" for m, why in left) + f"; they stay recorded "
            f"in {state.path}: run `tierpipe lab down` again, or remove them by hand"
        )
    state.path.unlink(missing_ok=True)
    return lines


def _lab_pids(state: LabState, cgroups: Cgroups, recorded: list[Made], keep: frozenset[int] = frozenset()) -> set[int]:
    pids = {m.pid for m in recorded if m.pid and process_start(m.pid) is not None and process_start(m.pid) == m.start}
    for item in state.made:
        if item.kind == "cgroup":
            pids.update(cgroups.procs(item.name))
        elif item.kind == "netns" and Path(f"/run/netns/{item.name}").exists():
            pids.update(int(p) for p in try_run(["ip", "netns", "pids", item.name]).stdout.split())
    pids.discard(os.getpid())
    return {p for p in pids - keep if process_start(p) is not None}


def stop_ray(state: LabState) -> list[str]:
    """``cluster down`` on a lab: stop every process the lab's hosts run (Ray's daemons and workers,
    sessions) but their sshd. ``ray stop`` would not do: the hosts share this machine's processes,
    and it stops every Ray on the machine, a test suite's or another lab's included."""
    cgroups = Cgroups(state.cgroup_version, Path(state.cgroup_root))
    sshd = frozenset(m.pid for m in state.made if m.kind == "process" and m.pid)
    return _stop_processes(state, cgroups, [], keep=sshd)


def _stop_processes(state: LabState, cgroups: Cgroups, recorded: list[Made], timeout_s: float = 5.0, keep=frozenset()) -> list[str]:
    """SIGTERM every lab process (but ``keep``), then SIGKILL what is left after ``timeout_s``; returns their names."""
    names = []
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, timeout_s)):
        pids = _lab_pids(state, cgroups, recorded, keep)
        if not pids:
            break
        for pid in pids:
            names.append(f"{pid} ({_comm(pid)})")
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and _lab_pids(state, cgroups, recorded, keep):
            time.sleep(0.05)
    return list(dict.fromkeys(names))


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _rmdir_cgroup(path: Path, timeout_s: float = 3.0) -> bool:
    """Remove a cgroup; an exiting process may hold it for a moment."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
