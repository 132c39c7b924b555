"""Phase-generic signal control: plain classes over a junction's own green phases, no SUMO.

A :class:`SignalProgram` is what SUMO's program for one traffic light says, reduced to what a
controller needs: the green phases (each a state string, one character per controlled link),
which lane each link leads from and to, and the program's yellow and all-red times.

A controller (:class:`MaxPressure`, :class:`Greedy`) is stepped at every simulation step with the
queues it knows (halting vehicles per lane). It decides only every ``control_step_s`` and only
once the current green has lasted ``min_green_s``; it leaves a green that has lasted
``max_green_s`` for the best other phase that has anyone waiting. A change goes through the
program's yellow (links losing green show ``y``), then all-red (they show ``r``), then the new
green; links green in both phases stay green throughout.

>>> p = SignalProgram("J", greens=("GGrr", "rrGG"), links=(("n_0", "s_0"), ("n_1", "e_0"), ("w_0", "e_0"), ("w_1", "n_0")),
...                   yellow_s=3, all_red_s=2)
>>> c = MaxPressure(p, min_green_s=5, control_step_s=5)
>>> [c.update(t, {"w_0": 4, "w_1": 2}) for t in (0, 5, 8, 10)]
['GGrr', 'yyrr', 'rrrr', 'rrGG']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["SignalProgram", "PhaseController", "MaxPressure", "Greedy", "CONTROLLERS", "is_green"]


def is_green(c: str) -> bool:
    """SUMO's green: ``G`` (priority) and ``g`` (yield); ``s``, ``o``, ``u`` and red are not."""
    return c in "Gg"


@dataclass(frozen=True)
class SignalProgram:
    """One traffic light as its controller sees it.

    Args:
        tls: the traffic light's id.
        greens: the program's green phases in program order (a state string each).
        links: per link index, ``(incoming lane, outgoing lane)``.
        yellow_s: the program's yellow time; all_red_s: its all-red time (0: none).
    """

    tls: str
    greens: tuple[str, ...]
    links: tuple[tuple[str, str], ...]
    yellow_s: float = 3.0
    all_red_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.greens:
            raise ValueError(f"traffic light {self.tls}: its program has no green phase to choose from")
        bad = [g for g in self.greens if len(g) != len(self.links)]
        if bad:
            raise ValueError(f"traffic light {self.tls}: phase {bad[0]!r} has {len(bad[0])} links, the light controls {len(self.links)}")

    @property
    def incoming(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(i for i, _ in self.links))

    def yellow(self, src: int, dst: int) -> str:
        """Links green now and not in ``dst`` show yellow; the others keep their state."""
        a, b = self.greens[src], self.greens[dst]
        return "".join("y" if is_green(x) and not is_green(y) else x for x, y in zip(a, b))

    def all_red(self, src: int, dst: int) -> str:
        a, b = self.greens[src], self.greens[dst]
        return "".join("r" if is_green(x) and not is_green(y) else x for x, y in zip(a, b))


@dataclass
class PhaseController:
    """Choose the green phase with the largest :meth:`score`; minimum and maximum green, yellow, all-red.

    Subclasses define :meth:`score`. State is plain data: ``phase`` (index into ``program.greens``),
    ``stage`` (``green``, ``yellow`` or ``red``), ``since`` (when the stage began), ``switches``.
    """

    program: SignalProgram
    min_green_s: float = 5.0
    max_green_s: float = 60.0
    control_step_s: float = 5.0
    phase: int = 0
    stage: str = "green"
    since: float = 0.0
    next_phase: int = 0
    switches: int = 0
    _last_decision: float = field(default=float("-inf"), repr=False)

    name = "phase"

    def score(self, phase: int, queues: Mapping[str, float]) -> float:
        raise NotImplementedError

    def best(self, queues: Mapping[str, float], exclude: int | None = None) -> tuple[int, float]:
        """The phase with the largest score (the lowest index on a tie), and its score."""
        scores = [(self.score(i, queues), -i) for i in range(len(self.program.greens)) if i != exclude]
        s, neg = max(scores)
        return -neg, s

    def update(self, t: float, queues: Mapping[str, float], decide: bool = True) -> str:
        """The signal state at time ``t``, given halting vehicles per lane (lanes not listed count 0).

        ``decide=False``: only follow a change under way (yellow, all-red); choose nothing.
        """
        held = t - self.since
        p = self.program
        if (
            decide
            and self.stage == "green"
            and len(p.greens) > 1
            and held >= self.min_green_s - 1e-9
            and t - self._last_decision >= self.control_step_s - 1e-9
        ):
            self._last_decision = t
            if held >= self.max_green_s - 1e-9:
                target, s = self.best(queues, exclude=self.phase)
                target = target if s > 0 else self.phase
            else:
                target, s = self.best(queues)
                if s <= self.score(self.phase, queues):  # a tie keeps the current green
                    target = self.phase
            if target != self.phase:
                self.next_phase, self.stage, self.since, held = target, "yellow", t, 0.0
        if self.stage == "yellow" and held >= p.yellow_s - 1e-9:
            self.stage, self.since, held = "red", t, 0.0
        if self.stage == "red" and held >= p.all_red_s - 1e-9:
            self.phase, self.stage, self.since = self.next_phase, "green", t
            self.switches += 1
        if self.stage == "yellow":
            return p.yellow(self.phase, self.next_phase)
        if self.stage == "red":
            return p.all_red(self.phase, self.next_phase)
        return p.greens[self.phase]


@dataclass
class MaxPressure(PhaseController):
    """Max-pressure (Varaiya 2013): a phase's pressure is the sum over its green movements of
    the queue on the incoming lane minus the queue on the outgoing lane."""

    name = "max_pressure"

    def score(self, phase: int, queues: Mapping[str, float]) -> float:
        state = self.program.greens[phase]
        return sum(queues.get(i, 0.0) - queues.get(o, 0.0) for (i, o), c in zip(self.program.links, state) if is_green(c))


@dataclass
class Greedy(PhaseController):
    """Longest-queue-first: a phase's score is the total queue on the incoming lanes it gives green
    (each lane counted once, however many movements it has)."""

    name = "greedy"

    def score(self, phase: int, queues: Mapping[str, float]) -> float:
        state = self.program.greens[phase]
        lanes = {i for (i, _), c in zip(self.program.links, state) if is_green(c)}
        return sum(queues.get(lane, 0.0) for lane in lanes)


CONTROLLERS: dict[str, type[PhaseController]] = {"max_pressure": MaxPressure, "greedy": Greedy}
