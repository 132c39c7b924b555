"""A stage's CPU on a lab host: join the host's cgroup, whose quota gives the node its tier's speed.

``tierpipe lab up --out LAB.yaml`` gives each host ``env: {TIERPIPE_NODE_CGROUP: <cgroup dir>}``;
``tierpipe cluster up`` starts Ray there with it, so every worker inherits it. A stage actor calls
:func:`join_node_cgroup` once it has started: Ray's daemons and the imports of a starting worker
run unthrottled, the stage's frames at the quota. Off a lab the variable is unset and nothing happens.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

__all__ = ["NODE_CGROUP_ENV", "join_node_cgroup", "node_cores", "cpu_quota", "host_battery_pct"]

NODE_CGROUP_ENV = "TIERPIPE_NODE_CGROUP"
log = logging.getLogger(__name__)


def join_node_cgroup(where: str = "this process") -> str | None:
    """Move this process (all its threads) into ``$TIERPIPE_NODE_CGROUP``; returns the cgroup, or None when unset.

    Raises:
        RuntimeError: the variable names a cgroup this process cannot join (gone, or not root),
            saying which and how to fix it: a stage silently running at full speed would make
            every measurement on the lab wrong.
    """
    folder = os.environ.get(NODE_CGROUP_ENV)
    if not folder:
        return None
    procs = Path(folder) / "cgroup.procs"
    try:
        procs.write_text(str(os.getpid()))
    except OSError as exc:
        raise RuntimeError(
            f"{where}: cannot join the node's cgroup {folder} ({exc.strerror}); {NODE_CGROUP_ENV} comes from the host's env: "
            "in the topology; is the lab still up (`tierpipe lab status`) and does Ray run as root there?"
        ) from None
    log.info("%s: joined cgroup %s", where, folder)
    return folder


def cpu_quota(folder: str | Path) -> tuple[int | None, int] | None:
    """A cgroup's (quota µs or None for no limit, period µs): v2 ``cpu.max`` where it has one, else v1
    ``cpu.cfs_quota_us``/``cpu.cfs_period_us``; None when it cannot be read (gone, or no cpu controller)."""
    path = Path(folder)
    try:
        if (path / "cpu.max").exists():
            quota, period = (path / "cpu.max").read_text().split()
            return (None if quota == "max" else int(quota)), int(period)
        quota = int((path / "cpu.cfs_quota_us").read_text())
        return (None if quota < 0 else quota), int((path / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None


def node_cores(folder: str | None = None) -> float | None:
    """The cores the node's cgroup (``folder``, default ``$TIERPIPE_NODE_CGROUP``) may use: its quota over its
    period (:func:`cpu_quota`); None without a cgroup or quota.

    >>> import tempfile; d = Path(tempfile.mkdtemp())
    >>> _ = (d / "cpu.cfs_quota_us").write_text("1000"), (d / "cpu.cfs_period_us").write_text("10500")
    >>> round(node_cores(str(d)), 4)
    0.0952
    >>> _ = (d / "cpu.max").write_text("max 100000"); node_cores(str(d)) is None
    True
    """
    folder = folder if folder is not None else os.environ.get(NODE_CGROUP_ENV)
    quota = cpu_quota(folder) if folder else None
    return quota[0] / quota[1] if quota and quota[0] is not None else None


def host_battery_pct() -> float | None:
    """This machine's battery charge, where it has one (a camera board, a laptop); None on mains power."""
    try:
        import psutil  # Ray ships it

        battery = psutil.sensors_battery()
    except (ImportError, AttributeError, NotImplementedError, OSError):
        return None
    return float(battery.percent) if battery is not None and not battery.power_plugged else None
