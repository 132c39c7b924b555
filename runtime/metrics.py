"""Metrics each actor keeps and the report that gathers them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Series", "StageMetrics", "percentiles", "per_frame_p50"]


def percentiles(values: list[float], qs=(50, 95, 99)) -> dict[str, float]:
    if not values:
        return {f"p{q}": float("nan") for q in qs}
    found = np.percentile(np.asarray(values), list(qs))  # one sort for all of them
    return {f"p{q}": float(v) for q, v in zip(qs, found)}


@dataclass
class Series:
    """A bounded sample of a quantity with its running count and sum."""

    cap: int = 20000
    values: list[float] = field(default_factory=list)
    count: int = 0
    total: float = 0.0

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        if len(self.values) < self.cap:
            self.values.append(value)
        else:
            self.values[self.count % self.cap] = value

    def recent(self, n: int = 1000) -> list[float]:
        """The last ``n`` values added (the sample is a ring once it is full)."""
        if self.count <= self.cap:
            return self.values[-n:]
        end = self.count % self.cap + 1
        ring = self.values[end:] + self.values[:end]
        return ring[-n:]

    def summary(self) -> dict:
        mean = self.total / self.count if self.count else float("nan")
        first = self.values[0] if self.values else float("nan")  # kept while the sample is not full: a run's first batch
        return {"count": self.count, "mean": mean, "first": first if self.count <= self.cap else float("nan"), **percentiles(self.values)}


def per_frame_p50(compute: Series, batch: Series) -> float | None:
    """The median frame's time after a stage's first batch (each frame at its batch's time over its frames), or None
    with fewer than two batches or once the samples have wrapped (they are no longer aligned batch by batch).

    The typical frame's time: one frame the host's other processes preempted does not move it, as it moves the mean
    of a run of a few dozen frames (``stagetimes.py``).

    >>> c, b = Series(), Series()
    >>> for took, n in [(0.09, 1), (0.010, 1), (0.024, 2), (0.030, 1)]:
    ...     c.add(took); b.add(n)
    >>> per_frame_p50(c, b)     # frames at 10, 12, 12 and 30 ms
    0.012
    """
    if compute.count < 2 or compute.count > compute.cap or len(compute.values) != len(batch.values):
        return None
    took, frames = np.asarray(compute.values[1:], dtype=float), np.asarray(batch.values[1:], dtype=int)
    keep = frames > 0
    return float(np.median(np.repeat(took[keep] / frames[keep], frames[keep])))  # each frame counts once


@dataclass
class StageMetrics:
    """What one stage actor saw: its compute, queueing, batches, link and rejects."""

    stage: str
    node: str
    compute_s: Series = field(default_factory=Series)
    emulated_wait_s: Series = field(default_factory=Series)
    queue_s: Series = field(default_factory=Series)
    batch: Series = field(default_factory=Series)
    link_bytes: Series = field(default_factory=Series)
    link_s: Series = field(default_factory=Series)
    inbound_s: Series = field(default_factory=Series)  # send start below -> frame accepted here
    frames_in: int = 0
    frames_out: int = 0
    rejected: int = 0
    repeats: int = 0  # frames fed or replayed again while this stage still held them: dropped
    last_reject: str = ""
    replayed: int = 0
    restarts_seen: int = 0
    bad_timestamps: int = 0  # results whose end-to-end time was absurd (kept out of the latency figures)
    exited: int = 0  # frames an early exit of this stage answered (a result frame went on instead)
    mixed_batches: int = 0  # batches holding frames to compute and frames only passing through (exited, errors)
    emulated_budget_s: float = 0.0  # the tier's time emulation gave the batches (the plan's prediction, x conditions)
    emulated_real_s: float = 0.0  # what the same batches took on this host before any wait (stage and packing)
    over_budget: int = 0  # batches that took longer on this host than their tier's time: emulation could not honour it

    def note_emulation(self, real_s: float, budget_s: float) -> None:
        """One emulated batch: ``real_s`` on this host against the tier's ``budget_s``. Emulation only stretches:
        a batch over its budget runs at this host's pace, not the tier's."""
        self.emulated_budget_s += budget_s
        self.emulated_real_s += real_s
        self.over_budget += real_s > budget_s

    def to_json(self) -> dict:
        return {
            "stage": self.stage,
            "node": self.node,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "compute_s": self.compute_s.summary(),
            "frame_s_p50": per_frame_p50(self.compute_s, self.batch),
            "emulated_wait_s": self.emulated_wait_s.summary(),
            "queue_s": self.queue_s.summary(),
            "batch": self.batch.summary(),
            "link_bytes": self.link_bytes.summary(),
            "link_s": self.link_s.summary(),
            "inbound_s": self.inbound_s.summary(),
            "link_bytes_total": self.link_bytes.total,
            "rejected": self.rejected,
            "repeats": self.repeats,
            "last_reject": self.last_reject,
            "bad_timestamps": self.bad_timestamps,
            "replayed": self.replayed,
            "restarts_seen": self.restarts_seen,
            "mixed_batches": self.mixed_batches,
            "emulated_budget_s": self.emulated_budget_s,
            "emulated_real_s": self.emulated_real_s,
            "over_budget": self.over_budget,
            "exited": self.exited,
        }
