"""The driver of a run on the lab runs on the lab's head host, as on a real cluster.

A Ray driver registers the address of the node it runs on, and the stage actors connect back to
it there. A driver in this machine's own network namespace would register the head's address
while listening outside it, and no actor could reach it. So :func:`enter_head_namespace` moves
the driver into the head host's network namespace (``setns``; root, as the lab itself) before Ray
connects: only the network namespace changes; files, processes and the console stay the same.
A long-lived Python driver calls ``ray.shutdown()`` and :func:`leave_head_namespace` before
``tierpipe lab down``: a process inside a namespace keeps it (and its links) alive.
"""

from __future__ import annotations

import ctypes
import json
import os
from pathlib import Path

from partition.topology import Topology

from ..errors import LabError

__all__ = ["head_namespace", "enter_head_namespace", "leave_head_namespace"]

CLONE_NEWNET = 0x40000000
_home: list[int] = []  # a handle on the namespace this process started in, once it has left it


def head_namespace(topo: Topology) -> str | None:
    """The network namespace of the lab host that runs the head (the sink tier's first node); None off a lab."""
    if topo.lab is None:
        return None
    head = topo.path[-1].node_names()[0]
    address = topo.hosts[head].address if head in topo.hosts else None
    state = Path(topo.lab.state)
    where = topo.source_file or topo.name
    try:
        hosts = json.loads(state.read_text())["plan"]["hosts"]
    except (OSError, ValueError, KeyError) as exc:
        raise LabError(
            f"{where} is a lab topology, but its lab's state {state} cannot be read ({exc}): "
            "is the lab up? `tierpipe lab up TOPOLOGY --out LAB.yaml` makes it and writes a new LAB.yaml"
        ) from None
    for host in hosts:
        if host["address"] == address:
            return host["netns"]
    raise LabError(f"{where}: the head {head} at {address} is not a host of the lab recorded in {state}; run `tierpipe lab up` again")


def _inode(path: str) -> int:
    return os.stat(path).st_ino


def enter_head_namespace(topo: Topology) -> str | None:
    """Move this process's network namespace to the lab's head host; returns its name (None off a lab).

    Call it before Ray starts any thread: threads made later inherit the namespace, earlier ones keep theirs.

    Raises:
        LabError: not root, or the namespace is gone (the lab is down).
    """
    netns = head_namespace(topo)
    if netns is None:
        return None
    path = f"/run/netns/{netns}"
    if not os.path.exists(path):
        raise LabError(f"the lab's head namespace {netns} is gone: `tierpipe lab status` says what is left; `tierpipe lab up` remakes it")
    if _inode("/proc/thread-self/ns/net") == _inode(path):
        return netns
    if not _home:
        _home.append(os.open("/proc/thread-self/ns/net", os.O_RDONLY))
    fd = os.open(path, os.O_RDONLY)
    try:
        _setns(fd, f"cannot join the lab's head namespace {netns}", topo)
    finally:
        os.close(fd)
    return netns


def leave_head_namespace() -> None:
    """Back to the namespace this process started in (before ``lab down``, which stops every process
    in the lab's namespaces). Ray must be shut down first."""
    if _home:
        _setns(_home[0], "cannot go back to this process's own network namespace", None)


def _setns(fd: int, what: str, topo: Topology | None) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        where = f", or on the head itself: `ssh root@{topo.hosts[topo.path[-1].node_names()[0]].address} ...`" if topo else ""
        raise LabError(f"{what} ({os.strerror(err)}): a driver on the lab runs as root{where}")
