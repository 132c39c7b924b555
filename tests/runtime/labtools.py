"""Helpers of the tests that build a real lab (root, network namespaces, sshd)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _why_no_lab() -> str | None:
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "needs root (namespaces, veths, tc, cgroups)"
    missing = [t for t in ("ip", "tc", "ssh", "ssh-keygen") if shutil.which(t) is None]
    if not (shutil.which("sshd") or Path("/usr/sbin/sshd").exists()):
        missing.append("sshd")
    return f"missing {', '.join(missing)}" if missing else None


root_only = pytest.mark.skipif(_why_no_lab() is not None, reason=f"a real lab {_why_no_lab()}")


def in_netns(netns: str, code: str, timeout_s: float = 30) -> str:
    done = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0, done.stderr
    return done.stdout


def leftovers(directory: Path, prefix: str, network: str) -> list[str]:
    """Whatever a lab of ``prefix`` on ``network`` made that is still there: namespaces, links, cgroups,
    processes started from ``directory``, routes."""
    found = [
        f"netns {n}" for n in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split() if n.startswith(prefix)
    ]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    found += [f"link {line.split(':')[1].strip()}" for line in links.splitlines() if line.split(":")[1].strip().startswith(prefix)]
    found += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob(f"**/{prefix}lab")]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(directory) in args:
            found.append(f"process {pid}: {args}")
    found += [
        f"route {r}" for r in subprocess.run(["ip", "route", "show", "root", network], capture_output=True, text=True).stdout.splitlines()
    ]
    return found


def measure_mbps(sender_netns: str, receiver_netns: str, receiver: str, nbytes: int = 4_000_000) -> float:
    """Mbit/s of ``nbytes`` sent over TCP from one lab host to another (the receiver counts them)."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", receiver_netns, sys.executable, "-c", SINK.format(address=receiver)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout.readline().strip() == "ready"
        in_netns(sender_netns, f"import socket; s = socket.create_connection(({receiver!r}, 5201)); s.sendall(bytes({nbytes})); s.close()")
        return float(server.stdout.readline())
    finally:
        server.kill()
        server.wait()


SINK = """
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(({address!r}, 5201)); s.listen(1)
print("ready", flush=True)
c, _ = s.accept(); first = c.recv(1 << 16); t0 = time.monotonic(); n = 0
while chunk := c.recv(1 << 16):
    n += len(chunk)
print(n * 8 / (time.monotonic() - t0) / 1e6, flush=True)
"""
