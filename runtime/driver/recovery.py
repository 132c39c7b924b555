"""Recovery: a part of the driver, without Ray. Acknowledgements on a cadence, the stall watch, and
feeding a device's undelivered frames again once it answers: nothing here waits for a node."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["Recovery"]

log = logging.getLogger("runtime.pipeline")


class Recovery:
    """When to acknowledge, when the stream has stalled, and which devices are back to be fed again.

    Args:
        stall_s: no result for this long while frames are in flight: feed again and replay.
        hello: ``hello(node)`` -> a call that completes when ``node`` answers (Ray's ``hello.remote()``).
        finished: ``finished(calls)`` -> the calls among them that are done (Ray's ``wait``, not waiting).
        answered: ``answered(call)`` -> True when a finished call succeeded (False: ask again later).
        ack_every_s: the safety net's cadence (acknowledgements normally ride on replies).
        retry_s: a node whose answer has not come after this long is asked again (a call can hang).

    >>> t = [0.0]
    >>> rec = Recovery(3.0, hello=lambda n: n, finished=set, answered=lambda c: True, clock=lambda: t[0])
    >>> rec.stalled(holding=True)
    False
    >>> t[0] = 3.5; rec.stalled(holding=True), rec.stalled(holding=True)   # once, then the clock starts again
    (True, False)
    >>> rec.ask(["device-0"]); rec.back()
    ['device-0']
    """

    def __init__(
        self,
        stall_s: float,
        hello: Callable[[str], object],
        finished: Callable[[list], set],
        answered: Callable[[object], bool],
        ack_every_s: float = 2.0,
        retry_s: float = 30.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.stall_s, self.ack_every_s, self.retry_s = stall_s, ack_every_s, retry_s
        self.hello, self.finished, self.answered, self.clock = hello, finished, answered, clock
        self.last_progress = self.last_ack = clock()
        self.asked: dict = {}  # a hello call in flight -> (the device node it asks, when)

    def progress(self) -> None:
        """Results arrived (or the first frame went in flight): the stall clock starts again."""
        self.last_progress = self.clock()

    def ack_due(self) -> bool:
        """True every ``ack_every_s`` (the caller then tells every node the delivered watermarks)."""
        now = self.clock()
        if now - self.last_ack <= self.ack_every_s:
            return False
        self.last_ack = now
        return True

    def acked(self) -> None:
        self.last_ack = self.clock()

    def stalled(self, holding: bool) -> bool:
        """True once per ``stall_s`` without a result while frames are in flight."""
        now = self.clock()
        if not holding or now - self.last_progress <= self.stall_s:
            return False
        self.last_progress = now
        return True

    def ask(self, nodes) -> None:
        """Ask ``nodes`` (devices holding undelivered frames) whether they are up; :meth:`back` says when."""
        now = self.clock()
        for call, (node, at) in list(self.asked.items()):
            if now - at > self.retry_s:  # no answer for long: that call may never return; ask again
                log.warning("device stage %s has not answered for %.0f s; asking again", node, now - at)
                del self.asked[call]
        waiting = {node for node, _ in self.asked.values()}
        for node in nodes:
            if node not in waiting:
                self.asked[self.hello(node)] = (node, now)

    def back(self) -> list[str]:
        """The asked nodes that answered since the last call (feed them their undelivered frames again)."""
        if not self.asked:
            return []
        out = []
        for call in self.finished(list(self.asked)):
            node, _ = self.asked.pop(call)
            if self.answered(call):
                out.append(node)
            else:  # still restarting: the next stall asks again
                log.warning("device stage %s not back yet", node)
        return out
