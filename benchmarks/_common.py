"""Shared by the benchmark scripts: where results go, how they are printed."""

from __future__ import annotations

import json
import platform
import time
from contextlib import contextmanager
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def save(name: str, payload: dict) -> Path:
    """Print ``payload`` as JSON and save it to ``benchmarks/results/<name>.json`` with machine facts."""
    RESULTS.mkdir(exist_ok=True)
    payload = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "host": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        **payload,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1))
    summary = {k: v for k, v in payload.items() if not (isinstance(v, list) and len(v) > 8)}
    print(json.dumps(summary, indent=1))
    print(f"saved {path}")
    return path


@contextmanager
def started(plan, model, topo, example, **options):
    """A pipeline timed from ``Pipeline(...)`` to its first result: yields ``(pipe, start-up figures)``
    (``processes``, ``ready_s``, ``first_result_s``), and closes it after."""
    from runtime.pipeline import Pipeline

    start = time.perf_counter()
    with Pipeline(plan, model, topo, **options) as pipe:
        ready = time.perf_counter() - start
        pipe.run([example])
        figures = {"processes": len(pipe.hosts) or len(pipe.stages), "ready_s": ready, "first_result_s": time.perf_counter() - start}
        yield pipe, figures
