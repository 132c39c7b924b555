"""The pipeline's plan registry: every plan version's stage modules, for actors that restart after a switch.

A restarted stage actor is built again from its constructor arguments, which name plan version
0 only; when a frame of a later version reaches it, it asks this registry for that version's
stage (an object reference: the module itself stays in Ray's object store, shipped once).
"""

from __future__ import annotations

__all__ = ["PlanRegistry"]


class PlanRegistry:
    """``{(tier, version): (stage ref, expected specs, codec up, emulated compute s)}``."""

    def __init__(self) -> None:
        self.entries: dict[tuple[int, int], tuple] = {}

    def put(self, tier: int, version: int, stage_ref_box: list, expected: dict, codec_up: str,
            emulated_compute_s: float | None) -> None:
        # the stage ref comes in a list, so Ray hands over the reference rather than the module
        self.entries[(tier, version)] = (stage_ref_box[0], expected, codec_up, emulated_compute_s)

    def get(self, tier: int, version: int):
        return self.entries.get((tier, version))

    def drop(self, version: int) -> None:
        for key in [k for k in self.entries if k[1] == version]:
            del self.entries[key]
