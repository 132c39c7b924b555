"""What observers of a running pipeline see: a part of the driver, without Ray."""

from __future__ import annotations

__all__ = ["DriverView"]


class DriverView:
    """The narrow view the adapter, the report and the live view read, and the two things the adapter may
    do (``switch``, ``route``). Read-only figures come from the driver's parts; nothing here writes them.

    Built from a :class:`runtime.pipeline.Pipeline`'s parts: its :class:`PlanBook`, ledger, admission,
    switcher, observer and deployment (for the nodes' handles), and its ``switch`` and ``route``.
    """

    def __init__(self, pipe) -> None:
        self.topology, self.model, self.emulate = pipe.topology, pipe.model, pipe.emulate
        self.tier_of, self.stream_nodes = pipe.tier_of, pipe.stream_nodes
        self._book, self._ledger, self._admission = pipe.book, pipe.ledger, pipe.admission
        self._switcher, self._observer, self._deployment = pipe.switcher, pipe.observer, pipe.deployment
        self.switch, self.route = pipe.switch, pipe.route

    # the plans
    @property
    def plan(self):
        return self._book.plan

    @property
    def plans(self) -> dict:
        return dict(self._book.plans)

    @property
    def version(self) -> int:
        return self._book.version

    @property
    def routes(self) -> dict:
        return dict(self._book.routes)

    @property
    def plan_label(self) -> str:
        return self._book.label

    @property
    def switching(self) -> bool:
        return self._switcher.switching

    # the counters
    @property
    def delivered(self) -> int:
        return self._ledger.total

    @property
    def admitted(self) -> int:
        return sum(self._ledger.next_seq.values())

    @property
    def dropped(self) -> int:
        return self._admission.dropped

    @property
    def duplicates(self) -> int:
        return self._ledger.duplicates

    @property
    def wall_s(self) -> float:
        return self._observer.wall_s

    @property
    def timeline(self):
        return self._observer.timeline

    @property
    def adapter(self):
        return self._observer.adapter

    @property
    def stages(self) -> dict:
        """node -> handle, to ask the nodes for their metrics (a copy: the view adds or removes no node)."""
        return dict(self._deployment.stages)
