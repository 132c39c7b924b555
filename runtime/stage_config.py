"""Plain settings of one stage actor instance: everything but its stage module and its parent's handle."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from partition.graph import TensorSpec

__all__ = ["StageConfig"]


@dataclass(frozen=True)
class StageConfig:
    """Plain settings of one stage instance (everything but the module and the parent handle)."""

    tier: int
    tier_name: str
    node: str
    expected: dict[str, TensorSpec | None]
    codec_up: str = "raw"
    link: dict | None = None  # bandwidth_mbps, latency_ms, jitter_ms, loss of the uplink
    emulate: bool = False
    scale: float = 1.0  # seconds on this tier per second on this host
    emulated_compute_s: float | None = None  # the tier's predicted time per frame (plan); else real x scale
    max_batch: int = 8
    max_wait_s: float = 0.002
    credits: int = 4
    queue_frames: int = 64
    max_frame_bytes: int = 64 << 20
    threads: int = 1
    device: str = "cpu"
    last: bool = False
    speed: float | None = None  # the tier's nominal speed (a 'speed' condition is relative to it)
    conditions: tuple = ()  # emulation: (at_s, field, value) changes of this node (conditions.py)
    debug: bool = field(default_factory=lambda: os.environ.get("TIERPIPE_DEBUG") == "1")

    @property
    def where(self) -> str:
        return f"stage {self.tier_name!r} ({self.node})"
