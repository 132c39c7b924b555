"""Where a process's CPU goes: py-spy samples of running processes, folded by function (benchmarks only).

py-spy is not a dependency of tierpipe: ``pip install py-spy``. Without it, :func:`where_cpu_goes` says so
and returns nothing; the benchmarks' figures do not depend on it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

__all__ = ["where_cpu_goes"]


ROOT = Path(__file__).resolve().parent.parent


def _short(path: str) -> str:
    """A source file as a reader knows it: ``ray/_private/worker.py``, ``asyncio/events.py``, ``runtime/actors.py``."""
    if not path:
        return "native code"
    if "site-packages/" in path:
        return path.split("site-packages/")[-1]
    if "/lib/python3" in path:
        return path.split("/lib/python3")[-1].split("/", 1)[-1]
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return path


# waits that py-spy samples as active on this kind of machine (a thread blocked in epoll, Ray's main loop or a
# condition): left out, so the shares are of work
WAITS = {"EpollSelector.select (selectors.py)", "Worker.main_loop (ray/_private/worker.py)", "Condition.wait (threading.py)"}


def _fold(raw: str) -> Counter:
    """Samples per leaf function (``function (file)``), from py-spy's ``--format raw`` lines; waits left out."""
    leaves: Counter = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.split(";")[-1].strip()
        name, _, where = leaf.partition(" (")
        leaf = f"{name or 'native code'} ({_short(where.split(':')[0])})"
        if leaf not in WAITS:
            leaves[leaf] += int(count)
    return leaves


def where_cpu_goes(pids: list[int], seconds: float, top: int = 12, rate: int = 100) -> list[dict]:
    """Sample ``pids`` for ``seconds`` (non-blocking: the processes run on) and return the functions that
    took the most samples, ``[{"function", "share"}]`` (share of all the processes' active samples), or ``[]``
    when py-spy is missing or may not attach."""
    exe = shutil.which("py-spy")
    if exe is None:
        print("    (py-spy is not installed: `pip install py-spy` shows where the CPU goes)")
        return []
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for pid in pids:
            out = Path(tmp) / f"{pid}.txt"
            cmd = [exe, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(rate)]
            cmd += ["--format", "raw", "--nonblocking", "--output", str(out)]
            runs.append((subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out))
        leaves: Counter = Counter()
        for proc, out in runs:
            proc.wait(timeout=seconds + 60)
            if out.exists():
                leaves += _fold(out.read_text())
    total = sum(leaves.values())
    return [{"function": f, "share": round(n / total, 4)} for f, n in leaves.most_common(top)] if total else []
