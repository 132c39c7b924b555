"""The quota model against this kernel: `sudo python benchmarks/bench_quota.py` (Linux, root, cgroup v1 or v2).

`partition/quota.py` prices a burst of CPU under a CFS quota (a budget per period, refilled, not added to) as its
expected wall time, started with the budget full at a random point of the period. This script makes a cgroup with
a lab device's quota (the shortest period that holds a 1 ms budget: 1 ms every 10.5 ms for 0.095 core, and the
same share over longer periods), spins bursts of 0.5-40 ms of CPU in it with idle gaps between them (a frame at a
time), and prints the measured mean and median wall time of each size beside the model's. Saves
`benchmarks/results/bench_quota.json`. Nothing of it is left after: the cgroup is removed.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import save  # noqa: E402
from partition.quota import quota_wall_s  # noqa: E402
from runtime.lab.netns import find_cgroups  # noqa: E402

BURSTS_MS = (0.5, 1, 2, 3, 5, 8, 12, 20, 40)
QUOTAS_US = ((1000, 10500), (4000, 42000), (8000, 84000))  # 0.095 core over three periods


def _spin(cpu_s: float) -> None:
    start = time.thread_time()
    while time.thread_time() - start < cpu_s:
        pass


def _bursts(repeats: int) -> dict[float, list[float]]:
    """Wall seconds of each burst size, ``repeats`` times, 150-200 ms apart (the budget is full at each start)."""
    out: dict[float, list[float]] = {}
    for ms in BURSTS_MS:
        walls = []
        for _ in range(repeats):
            time.sleep(0.15 + random.random() * 0.05)
            start = time.perf_counter()
            _spin(ms / 1e3)
            walls.append(time.perf_counter() - start)
        out[ms] = walls
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30, help="bursts of each size")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_quota needs root (it makes a cgroup): run it with sudo")
    cgroups = find_cgroups()
    home = (cgroups.membership(os.getpid()) or "/").lstrip("/")
    rows = []
    for budget_us, period_us in QUOTAS_US:
        name = f"tierpipe-bench-quota-{os.getpid()}"
        folder = cgroups.create(name, budget_us, period_us)
        try:
            cgroups.add(name, os.getpid())
            walls = _bursts(args.repeats)
        finally:
            cgroups.add(home, os.getpid())  # back where it was, then ours goes
            folder.rmdir()
        for ms, w in walls.items():
            model = quota_wall_s(ms / 1e3, budget_us / 1e6, period_us / 1e6)
            mean = statistics.fmean(w)
            rows.append(
                {
                    "budget_ms": budget_us / 1e3,
                    "period_ms": period_us / 1e3,
                    "burst_cpu_ms": ms,
                    "model_ms": round(model * 1e3, 3),
                    "measured_mean_ms": round(mean * 1e3, 3),
                    "measured_median_ms": round(statistics.median(w) * 1e3, 3),
                    "measured_min_ms": round(min(w) * 1e3, 3),
                    "measured_max_ms": round(max(w) * 1e3, 3),
                    "error_of_mean": round((model - mean) / mean, 4),
                }
            )
            print(
                f"{budget_us / 1e3:g} ms / {period_us / 1e3:g} ms: {ms:5g} ms of CPU: model {model * 1e3:7.2f} ms, "
                f"measured mean {mean * 1e3:7.2f} (median {statistics.median(w) * 1e3:.2f}, {min(w) * 1e3:.2f}-{max(w) * 1e3:.2f})"
            )
    within = [abs(r["error_of_mean"]) <= 0.10 for r in rows]
    save(
        "bench_quota",
        {"repeats": args.repeats, "cgroup_version": cgroups.version, "model_within_10pct_of_mean": sum(within) / len(within), "rows": rows},
    )


if __name__ == "__main__":
    main()
