"""The emulated conditions' clock: a part of the driver, without Ray."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["ConditionsClock"]


class ConditionsClock:
    """Emulated conditions count from the first frame; the start is announced again every ``every_s``, so
    a restarted node catches up (its ``start_clock`` is idempotent).

    >>> t = iter([100.0, 101.0, 102.5])
    >>> clock = ConditionsClock(True, clock=lambda: next(t))
    >>> clock.tick(), clock.tick(), clock.tick()    # announce, too soon, again
    (100.0, None, 100.0)
    >>> ConditionsClock(False).tick() is None       # no conditions: nothing to announce
    True
    """

    def __init__(self, active: bool, every_s: float = 2.0, clock: Callable[[], float] = time.time) -> None:
        self.active, self.every_s, self.clock = active, every_s, clock
        self.t0: float | None = None  # the stream's start (wall clock)
        self.sent = float("-inf")

    def tick(self) -> float | None:
        """The start to announce to every node now, or None."""
        if not self.active:
            return None
        now = self.clock()
        if self.t0 is None:
            self.t0 = now
        if now - self.sent < self.every_s:
            return None
        self.sent = now
        return self.t0
