"""What changes while a pipeline runs: the emulated conditions' clock, plan switches, and the
per-second timeline that drives live adaptation. A part of :class:`runtime.pipeline.Pipeline`;
the state it uses is declared in ``Pipeline.__init__``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from partition.plan import Plan

from .errors import SwitchError, unavailable
from .packing import ask_all, tell_all
from .timeline import TimelineRecorder

__all__ = ["LiveChanges"]

log = logging.getLogger("runtime.pipeline")


class LiveChanges:
    """``switch`` and the per-poll bookkeeping of conditions, switches, timeline and adaptation."""

    def switch(
        self,
        plan: Plan,
        emulated_compute_s: Sequence[float] | None = None,
        timeout_s: float = 60.0,
        wait: bool = True,
        sources: Sequence[int] | None = None,
    ) -> dict | None:
        """Run new frames on ``plan``, with no pause: while every actor loads the new stage, frames go on
        flowing on the old plan (this call keeps feeding and collecting them); frames in flight finish on
        the plan they started with; delivery stays exactly once and in order per source.

        If any actor cannot load its stage (or does not answer within ``timeout_s``), nothing changes and
        :class:`SwitchError` says which and why.

        Args:
            emulated_compute_s: per tier, the time emulation makes each stage take on the new plan
                (default: the plan's prediction).
            wait: False: start the switch and return None; it completes inside later calls
                (``submit``, ``poll``...), and :attr:`switch_done` / :attr:`switch_error` tell how it went.
            sources: only these sources' new frames move to ``plan`` (a plan for some nodes: a camera
                low on battery, see :meth:`route`); the others stay on theirs. Default: every source
                without a route of its own.

        Returns:
            ``{"version", "prepare_ms", "sources"}`` (with ``wait``).
        """
        from .switch import PendingSwitch

        if self._pending is not None:
            raise SwitchError(f"a switch to plan version {self._pending.version} is still in progress")
        self.switch_done, self.switch_error = None, None
        if sources is not None:
            sources = [int(s) for s in sources]
            for source in sources:
                self._source(source)  # exists, or a PipelineError that says which do
        self._pending = PendingSwitch(self, plan, emulated_compute_s, timeout_s, sources)
        if not wait:
            return None
        while self._pending is not None:
            arrived = self.poll(0.02)  # (poll replaces the buffer: take its results first)
            self._results_buffer.extend(arrived)
        if self.switch_error:
            raise SwitchError(self.switch_error)
        return self.switch_done

    def route(self, sources: Sequence[int], version: int | None = None) -> None:
        """New frames of ``sources`` start on plan ``version`` (None: on :attr:`version`, the plan of
        every source without a route); frames in flight finish on theirs. No loading: the version is
        one every actor has or fetches (:meth:`switch` with ``sources`` prepares a new one)."""
        if version is not None and version not in self.plans:
            raise SwitchError(f"there is no plan version {version}; the pipeline has {sorted(self.plans)}")
        for source in sources:
            self._source(source)
            if version is None or version == self.version:
                self.routes.pop(source, None)
            else:
                self.routes[source] = version

    @property
    def plan_label(self) -> str:
        """``v2``, or ``v2 (v3 on 1 camera)`` while some sources are routed to another plan."""
        counts: dict[int, int] = {}
        for version in self.routes.values():
            counts[version] = counts.get(version, 0) + 1
        extra = ", ".join(f"v{v} on {n} camera{'s' if n > 1 else ''}" for v, n in sorted(counts.items()))
        return f"v{self.version}" + (f" ({extra})" if extra else "")

    def _observe(self, new_results: list, now: float) -> None:
        """The per-second timeline (every way of running records one) and, with ``adapt``, a round of
        measuring and re-planning once a second."""
        import ray

        if self.timeline is None:
            self.timeline = TimelineRecorder(now)
            if self.adapter is not None:
                self.adapter.attach(self, now)
        self.timeline.add(new_results, self.version)
        if self.adapter is not None and now - self._adapted_at >= 1.0:
            self._adapted_at = now
            try:  # counters only: percentiles of 21 actors' samples every second would cost a core
                counters = list(ask_all(self.stages, "counters", timeout_s=10).values())
            except (*unavailable(), ray.exceptions.GetTimeoutError):
                counters = None  # an actor is restarting: measure next round (its counters start again)
            if counters is not None:
                self.adapter.step(self, counters)
            self.adapter.step_s += time.perf_counter() - now

    def _check_switch(self) -> None:
        if self._pending is None:
            return
        try:
            done = self._pending.check()
        except SwitchError as exc:
            self.switch_error, self._pending = str(exc), None
            log.warning("%s", exc)
            return
        if done is not None:
            self.switch_done, self._pending = done, None

    def _tick_clock(self) -> None:
        """Emulated conditions count from the first frame; the start is re-announced every 2 s, so a
        restarted actor catches up (``start_clock`` is idempotent)."""
        if not (self.emulate and self.conditions):
            return
        now = time.time()
        if self._clock_t0 is None:
            self._clock_t0 = now
        if now - self._clock_sent >= 2.0:
            self._clock_sent = now
            tell_all(self.stages, "start_clock", self._clock_t0)
