"""Switching: a part of the driver, without Ray. One plan switch at a time (:class:`runtime.switch.PendingSwitch`
does the loading), seen by its caller as a :class:`SwitchHandle`."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..errors import SwitchError

__all__ = ["SwitchHandle", "Switcher"]

log = logging.getLogger("runtime.pipeline")


class SwitchHandle:
    """A plan switch: :attr:`done` once it went live (:attr:`result`) or failed (:attr:`error`, the old plan
    runs on). :meth:`wait` drives the pipeline until then."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.result: dict | None = None  # {"version", "prepare_ms", "build_ms", "shipped_ms", "sources", "loads"}
        self.error: str | None = None

    @property
    def done(self) -> bool:
        return self.result is not None or self.error is not None

    def wait(self, step: Callable[[], None]) -> dict:
        """Call ``step`` (the pipeline's step: frames keep flowing) until done; the result, or SwitchError."""
        while not self.done:
            step()
        if self.error is not None:
            raise SwitchError(self.error)
        return self.result

    def __repr__(self) -> str:
        state = "live" if self.result is not None else f"failed: {self.error}" if self.error else "loading"
        return f"<switch to plan v{self.version}: {state}>"


class Switcher:
    """Holds the switch in progress and finishes it from the driver's step loop.

    >>> class Load:  # a switch whose loads finish at the second check
    ...     version, checks = 1, 0
    ...     def check(self):
    ...         self.checks += 1
    ...         return {"version": 1} if self.checks == 2 else None
    >>> s = Switcher(); handle = s.begin(Load)
    >>> s.step(); handle.done, s.switching
    (False, True)
    >>> s.step(); handle.result, s.switching, s.last is handle
    ({'version': 1}, False, True)
    """

    def __init__(self) -> None:
        self.pending = None  # the switch loading now (runtime.switch.PendingSwitch)
        self.handle: SwitchHandle | None = None  # its handle
        self.last: SwitchHandle | None = None  # the newest switch, done or not

    @property
    def switching(self) -> bool:
        return self.pending is not None

    def begin(self, start: Callable[[], object]) -> SwitchHandle:
        """Start a switch: ``start()`` makes the loading (a :class:`runtime.switch.PendingSwitch`, which
        may refuse the plan with SwitchError). The last switch's outcome is forgotten first."""
        if self.pending is not None:
            raise SwitchError(f"a switch to plan version {self.pending.version} is still in progress")
        self.last = None
        pending = start()
        self.pending, self.handle = pending, SwitchHandle(pending.version)
        self.last = self.handle
        return self.handle

    def step(self) -> None:
        """Check the switch in progress; on its end, fill its handle."""
        if self.pending is None:
            return
        try:
            done = self.pending.check()
        except SwitchError as exc:
            self.handle.error = str(exc)
            log.warning("%s", exc)
            self.pending = None
            return
        if done is not None:
            self.handle.result, self.pending = done, None
