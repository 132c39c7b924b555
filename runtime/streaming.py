"""Live sources through a started :class:`runtime.pipeline.Pipeline`, over its public steps (``submit``,
``poll``, ``results``): :func:`stream_live`, which ``Pipeline.stream`` runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

__all__ = ["POLL_EVERY_S", "stream_live"]

POLL_EVERY_S = 0.025  # a stream asks the sinks for results at most this often


def stream_live(
    pipe,
    seconds: float,
    fps: float | None = None,
    inputs: Sequence | None = None,
    on_update: Callable[[dict], None] | None = None,
    drain_s: float = 60.0,
) -> dict:
    """:meth:`runtime.pipeline.Pipeline.stream` (its docstring says what it does)."""
    fps = fps or (pipe.topology.sources[0].fps if pipe.topology.sources else 10.0)
    samples = [x if isinstance(x, (tuple, list)) else (x,) for x in (inputs or [pipe.plan.example_inputs()])]
    start = time.perf_counter()
    last_update, update_s, last_poll, k, n = 0.0, 0.0, 0.0, 0, len(pipe.stream_nodes)
    while time.perf_counter() - start < seconds:
        # the cameras take their frames in turn, spread over the interval: cameras are not in phase, and
        # all of them at once would queue a burst at every shared stage that no real camera sees
        src, tick = k % n, k // n
        pipe.submit(src, *samples[(tick + src) % len(samples)], timeout_s=drain_s)
        k += 1
        due = start + k / (fps * n)
        while True:
            pipe.collector.drain()  # counted by the ledger; a stream keeps no outputs
            now = time.perf_counter()
            if on_update and now - last_update > max(0.5, 20 * update_s):  # a city's report costs more: less often
                on_update(pipe.report())
                last_update, update_s = time.perf_counter(), time.perf_counter() - now
            if now >= due:
                break
            if now - last_poll < POLL_EVERY_S:  # results come in batches: a call per frame would cost a core
                time.sleep(min(due, last_poll + POLL_EVERY_S) - now)
                continue
            pipe.poll(min(due - now, 0.05))
            last_poll = time.perf_counter()
    for _ in pipe.results(timeout_s=drain_s):
        pass
    pipe.acknowledge()
    report = pipe.report()
    report["offered"] = {"streams": n, "fps_per_stream": fps, "fps": fps * n, "seconds": seconds}
    return report
