"""The processes ``tierpipe cluster local`` started, and stopping just those.

``ray stop`` stops every Ray process on the machine, whoever started it. Instead, each raylet
of a local cluster is started in a session of its own (``setsid``), and the session id is
appended to a state file beside the cluster token. Every process Ray starts there (GCS,
raylet, agents, workers) inherits the session, so stopping the cluster is: signal every
process whose session id is recorded, wait, then kill what is left.

State: ``~/.tierpipe/local-<port>.sessions`` (one session id per line).
"""

from __future__ import annotations

import os
import shlex
import signal
import time
from pathlib import Path

__all__ = ["state_path", "recorded_script", "session_processes", "stop_recorded"]


def state_path(directory: Path, port: int) -> Path:
    return directory / f"local-{port}.sessions"


def recorded_script(script: str, state: Path) -> str:
    """``script`` run in a new session whose id is appended to ``state`` first."""
    inner = f"echo $$ >> {shlex.quote(str(state))}; {script}"
    return f"mkdir -p {shlex.quote(str(state.parent))} && setsid -w bash -c {shlex.quote(inner)}"


def _session_of(pid: int) -> int | None:
    """The session of a live process (None for one that is gone or a zombie: it runs nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else int(fields[3])


def session_processes(sessions: set[int]) -> list[int]:
    """Pids of the live processes in any of ``sessions`` (never this process)."""
    me = os.getpid()
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me and _session_of(int(entry)) in sessions:
            pids.append(int(entry))
    return pids


def stop_recorded(directory: Path, port: int | None = None, grace_s: float = 10.0) -> list[str]:
    """Stop the processes of every recorded local cluster (or the one on ``port``).

    Returns one line per cluster saying what was stopped (nothing when none is recorded).
    """
    pattern = f"local-{port}.sessions" if port is not None else "local-*.sessions"
    lines = []
    for state in sorted(directory.glob(pattern)):
        sessions = {int(x) for x in state.read_text().split() if x.isdigit()}
        pids = session_processes(sessions)
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while session_processes(sessions) and time.monotonic() < deadline:
            time.sleep(0.2)
        killed = session_processes(sessions)
        for pid in killed:
            _signal(pid, signal.SIGKILL)
        deadline = time.monotonic() + grace_s  # a killed process with large mappings takes a moment to go
        while session_processes(sessions) and time.monotonic() < deadline:
            time.sleep(0.1)
        state.unlink(missing_ok=True)
        port_of = state.name.removeprefix("local-").removesuffix(".sessions")
        lines.append(
            f"local cluster on port {port_of}: stopped {len(pids)} process(es) in {len(sessions)} session(s)"
            + (f", {len(killed)} of them killed after {grace_s:.0f} s" if killed else "")
        )
    return lines


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
