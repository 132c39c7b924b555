"""The plans a pipeline runs: a part of the driver, without Ray."""

from __future__ import annotations

from collections.abc import Iterable

from partition.plan import Plan

from ..errors import SwitchError

__all__ = ["PlanBook"]


class PlanBook:
    """Plan versions by number, the version new frames start on, and sources routed to another one.

    A frame carries the version it started on to the end, so a version stays here as long as the
    pipeline runs (actors keep the last few; a restarted one fetches the rest from the registry).

    >>> book = PlanBook("v0 plan")
    >>> book.adopt(1, "energy plan", sources=[3])       # only camera 3's new frames move
    >>> book.version_for(3), book.version_for(0), book.label
    (1, 0, 'v0 (v1 on 1 camera)')
    >>> book.adopt(2, "new plan"); book.version, book.plan, book.in_use()
    (2, 'new plan', [1, 2])
    """

    def __init__(self, plan: Plan) -> None:
        self.plans: dict[int, Plan] = {0: plan}
        self.version = 0  # the plan new frames start on
        self.routes: dict[int, int] = {}  # source -> another version for its new frames

    @property
    def plan(self) -> Plan:
        """The plan of every source without a route."""
        return self.plans[self.version]

    def version_for(self, source: int) -> int:
        return self.routes.get(source, self.version)

    def in_use(self) -> list[int]:
        """The versions new frames still start on."""
        return sorted({self.version, *self.routes.values()})

    def next_version(self) -> int:
        return max(self.plans) + 1

    def route(self, sources: Iterable[int], version: int | None = None) -> None:
        """New frames of ``sources`` start on ``version`` (None: on :attr:`version`)."""
        if version is not None and version not in self.plans:
            raise SwitchError(f"there is no plan version {version}; the pipeline has {sorted(self.plans)}")
        for source in sources:
            if version is None or version == self.version:
                self.routes.pop(source, None)
            else:
                self.routes[source] = version

    def adopt(self, version: int, plan: Plan, sources: Iterable[int] | None = None) -> None:
        """A switched-to plan is live: for every unrouted source, or only for ``sources``."""
        self.plans[version] = plan
        if sources is None:
            self.version = version
        else:
            self.route(sources, version)

    @property
    def label(self) -> str:
        """``v2``, or ``v2 (v3 on 1 camera)`` while some sources are routed to another plan."""
        counts: dict[int, int] = {}
        for version in self.routes.values():
            counts[version] = counts.get(version, 0) + 1
        extra = ", ".join(f"v{v} on {n} camera{'s' if n > 1 else ''}" for v, n in sorted(counts.items()))
        return f"v{self.version}" + (f" ({extra})" if extra else "")
