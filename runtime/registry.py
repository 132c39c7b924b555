"""The pipeline's plan registry: every plan version's stage modules, for actors that restart after a switch.

A restarted stage actor is built again from its constructor arguments, which name plan version
0 only; when a frame of a later version reaches it, it asks this registry for that version's
stage (an object reference: the module itself stays in Ray's object store, shipped once).

The registry holds references only, never the entries themselves: taking an entry in would
import torch into its process (the expected tensor specs), 2-4 s of CPU at the first switch,
taken from the stages that run the stream.
"""

from __future__ import annotations

__all__ = ["PlanRegistry"]


class PlanRegistry:
    """``{(tier, version): [ref of (stage box, expected specs, codec up, emulated compute s)]}``."""

    def __init__(self) -> None:
        self.entries: dict[tuple[int, int], list] = {}

    def put(self, tier: int, version: int, entry_box: list) -> None:
        # the reference comes in a list, so Ray hands it over rather than the entry
        self.entries[(tier, version)] = entry_box

    def get(self, tier: int, version: int) -> list | None:
        """``[entry ref]``, or None for a version this registry does not have."""
        return self.entries.get((tier, version))

    def drop(self, version: int) -> None:
        for key in [k for k in self.entries if k[1] == version]:
            del self.entries[key]
