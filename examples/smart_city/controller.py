"""Longest-queue-first signal control with minimum green, yellow and all-red: plain classes, no SUMO.

Each intersection has two axes (west-east ``EW``, south-north ``NS``). The axis with green
keeps it for at least ``min_green_s``; after that, the light changes when the other
axis's queue is longer by more than ``margin`` vehicles (or when green has lasted
``max_green_s`` and anyone waits on the other axis), through ``yellow_s`` of yellow and
``all_red_s`` of all-red.

>>> c = AxisController(min_green_s=5, yellow_s=3, all_red_s=1, margin=1)
>>> c.update(0.0, {"EW": 0, "NS": 4})      # green must last min_green_s first
('green', 'EW')
>>> c.update(5.0, {"EW": 0, "NS": 4}), c.update(8.0, {"EW": 0, "NS": 4}), c.update(9.0, {"EW": 0, "NS": 4})
(('yellow', 'EW'), ('red', None), ('green', 'NS'))
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AxisController", "AXES"]

AXES = ("EW", "NS")


@dataclass
class AxisController:
    min_green_s: float = 8.0
    max_green_s: float = 60.0
    yellow_s: float = 3.0
    all_red_s: float = 1.0
    margin: float = 1.5
    phase: str = "green"
    axis: str = "EW"
    since: float = 0.0
    switches: int = 0

    def update(self, t: float, queues: dict[str, float]) -> tuple[str, str | None]:
        """The signal at time ``t`` given the queue (vehicles) on each axis: ``(phase, axis)``."""
        held = t - self.since
        if self.phase == "green":
            other = AXES[1 - AXES.index(self.axis)]
            longer = queues[other] > queues[self.axis] + self.margin
            overdue = held >= self.max_green_s and queues[other] > 0.5
            if held >= self.min_green_s and (longer or overdue):
                self.phase, self.since = "yellow", t
        elif self.phase == "yellow" and held >= self.yellow_s:
            self.phase, self.since = "red", t
        elif self.phase == "red" and held >= self.all_red_s:
            self.phase, self.since = "green", t
            self.axis = AXES[1 - AXES.index(self.axis)]
            self.switches += 1
        return (self.phase, None if self.phase == "red" else self.axis)
