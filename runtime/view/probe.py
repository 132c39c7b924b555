"""A running pipeline as the live view's figures: tiers, per-node compute and queues, per-link
bytes/s against capacity, the plan and its switches, fps and latency over time.

It reads what :meth:`runtime.Pipeline.report` reads (each stage actor's metrics, one Ray call per
actor) each time it is asked: an update every 0.4-0.5 s costs the pipeline one small call per
actor (``benchmarks/bench_view.py`` measures it).
"""

from __future__ import annotations

import math
import time
from collections import deque

from partition.units import bytes_per_s

from ..packing import ask_all

__all__ = ["PipelineProbe", "tiers_static", "Series"]


def tiers_static(plan) -> dict:
    """The tiers graph from the plan alone: nodes with their parents, links with their capacity.

    >>> class P:
    ...     tiers = ("device", "edge")
    ...     parents = {"device-0": "edge-0"}
    ...     link_figures = ({"src": "device", "dst": "edge", "bandwidth_mbps": 8.0, "latency_ms": 1.0},)
    >>> tiers_static(P())["links"]
    [{'name': 'device->edge', 'capacity_bytes_s': 1000000.0}]
    """
    nodes = sorted(set(plan.parents) | set(plan.parents.values()), key=_node_order(plan.tiers))
    return {
        "names": list(plan.tiers),
        "nodes": [{"id": n, "tier": n.rsplit("-", 1)[0], "parent": plan.parents.get(n)} for n in nodes],
        "links": [{"name": f"{f['src']}->{f['dst']}", "capacity_bytes_s": bytes_per_s(f["bandwidth_mbps"])} for f in plan.link_figures],
    }


def _node_order(tiers):
    rank = {t: i for i, t in enumerate(tiers)}

    def key(node: str):
        tier, _, index = node.rpartition("-")
        return (rank.get(tier, len(rank)), int(index) if index.isdigit() else 0, node)

    return key


class Series:
    """The charts' figures, one point per update, the last ``keep`` points."""

    def __init__(self, keep: int = 600) -> None:
        self.t: deque = deque(maxlen=keep)
        self.fps: deque = deque(maxlen=keep)
        self.p50_ms: deque = deque(maxlen=keep)
        self.p99_ms: deque = deque(maxlen=keep)

    def add(self, t: float, fps: float, p50_ms: float | None, p99_ms: float | None) -> None:
        self.t.append(round(t, 2))
        self.fps.append(round(fps, 2))
        self.p50_ms.append(None if p50_ms is None else round(p50_ms, 2))
        self.p99_ms.append(None if p99_ms is None else round(p99_ms, 2))

    def to_json(self) -> dict:
        return {"t": list(self.t), "fps": list(self.fps), "p50_ms": list(self.p50_ms), "p99_ms": list(self.p99_ms)}


class PipelineProbe:
    """Reads a started :class:`runtime.Pipeline` into the view's ``pipeline`` and ``series`` figures.

    Each :meth:`update` asks every stage actor once (its callers decide how often); an actor that does
    not answer within ``timeout_s`` (restarting after a fault) leaves the last figures on the page
    rather than holding up the loop that asked.
    """

    def __init__(self, pipe, timeout_s: float = 2.0) -> None:
        self.view = pipe.view  # what observers read (runtime.driver.DriverView)
        self.timeout_s = timeout_s
        self.series = Series()
        self._t0 = self._last_t = time.perf_counter()
        self._last_delivered = self.view.delivered  # fps counts from now, not from the pipeline's start
        self._last_bytes: dict[str, float] = {}
        self._figures: dict | None = None

    def static(self) -> dict:
        return tiers_static(self.view.plan)

    def _metrics(self) -> list[dict] | None:
        import ray

        try:
            return list(ask_all(self.view.stages, "metrics_json", timeout_s=self.timeout_s).values())
        except (ray.exceptions.RayError, TimeoutError):
            return None

    def update(self) -> dict | None:
        """The pipeline's figures now (the last ones when a stage does not answer in time)."""
        metrics = self._metrics()
        if metrics is None:
            return self._figures
        now = time.perf_counter()
        dt = max(now - self._last_t, 1e-6)
        delivered = self.view.delivered
        fps = (delivered - self._last_delivered) / dt
        sink = next((m for m in metrics if "e2e_recent_s" in m), {})
        recent = sink.get("e2e_recent_s") or {}
        p50, p99 = (recent[q] * 1e3 if math.isfinite(recent.get(q, math.nan)) else None for q in ("p50", "p99"))
        capacity = {f["src"]: bytes_per_s(f["bandwidth_mbps"]) for f in self.view.plan.link_figures}
        nodes, links = {}, {}
        for m in metrics:
            node = m["node"]
            compute = m["compute_s"]["mean"] if m["compute_s"]["count"] else 0.0
            wait = m["emulated_wait_s"]["mean"] if m["emulated_wait_s"]["count"] else 0.0
            queue = m["queue_s"]["mean"] if m["queue_s"]["count"] else 0.0
            nodes[node] = {
                "compute_ms": round((compute + wait) * 1e3, 2),
                "queue_ms": round(queue * 1e3, 2),
                "queue_depth": m.get("queued", 0),
                "frames": m["frames_in"],
            }
            if node in self.view.plan.parents:
                total = float(m["link_bytes_total"])
                rate = max(total - self._last_bytes.get(node, total), 0.0) / dt
                self._last_bytes[node] = total
                links[node] = {"bytes_s": round(rate, 1), "capacity_bytes_s": capacity.get(node.rsplit("-", 1)[0])}
        plan = self.view.plans[self.view.version]
        ops: dict[str, int] = {t: 0 for t in plan.tiers}
        for tier in plan.assignment.values():
            ops[tier] = ops.get(tier, 0) + 1
        switches = self.view.adapter.report(self.view.timeline) if self.view.adapter is not None else []
        self._last_t, self._last_delivered = now, delivered
        self.series.add(now - self._t0, fps, p50, p99)
        self._figures = {
            "fps": round(fps, 2),
            "p50_ms": None if p50 is None else round(p50, 1),
            "p99_ms": None if p99 is None else round(p99, 1),
            "delivered": delivered,
            "sent": self.view.admitted,
            "dropped": self.view.dropped,
            "plan": {"version": self.view.version, "label": self.view.plan_label, "ops": ops, "codecs": list(plan.codecs)},
            "nodes": nodes,
            "links": links,
            "switches": [{"at_s": s.get("at_s"), "version": s.get("version"), "reason": s.get("reason", "")} for s in switches],
        }
        return self._figures
