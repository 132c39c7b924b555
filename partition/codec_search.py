"""Choosing the codec of every link: plain functions over a solver and an accuracy check.

- :func:`coordinate_search` (fast paths): start from the first codec of the space everywhere,
  then try every codec on every link in turn, re-solving the cut for each; keep a trial only
  when it is better and within the accuracy budget. Two passes.
- :func:`joint_search` (exact solver): the solver picks the codecs with the assignment; when
  the chosen lossy codec breaks the accuracy budget, that codec is removed from that link's
  choices and the problem is solved again.

Neither keeps state between trials: a rejected trial changes nothing in the result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .calibration import Accuracy, AccuracyBudget
from .codec import is_lossless
from .errors import PartitionError
from .solution import Solution, ranking_key

__all__ = ["coordinate_search", "joint_search", "Checked"]

# (solution, accuracy of its lossy codecs or None when every codec is lossless)
Checked = tuple[Solution, Accuracy | None]


def coordinate_search(
    solve: Callable[[list[str]], Solution],
    space: Sequence[str],
    links: int,
    objective: str,
    accuracy: Callable[[Solution], Accuracy | None],
    budget: AccuracyBudget,
    search: bool,
) -> Checked:
    """The best codec vector link by link (``search=False``: ``space[0]`` on every link, no search).

    Raises:
        PartitionError: from ``solve`` with the first vector (nothing fits or meets the SLO).
    """
    vec = [space[0]] * links
    best = solve(vec)
    best = _with_codecs(best, vec)
    best_acc = accuracy(best)
    if not search:
        return best, best_acc
    for _ in range(2):
        improved = False
        for j in range(links):
            for codec in space:
                if codec == vec[j]:
                    continue
                trial = vec[:j] + [codec] + vec[j + 1 :]
                try:
                    sol = _with_codecs(solve(trial), trial)
                except PartitionError:
                    continue
                if ranking_key(objective, sol.cost) >= ranking_key(objective, best.cost) - 1e-12:
                    continue
                acc = accuracy(sol)
                if acc is not None and not acc.within(budget):
                    continue
                vec, best, best_acc, improved = trial, sol, acc, True
        if not improved:
            break
    return best, best_acc


def joint_search(
    solve: Callable[[list[list[str]]], Solution | None],
    space: Sequence[str],
    links: int,
    accuracy: Callable[[Solution], Accuracy | None],
    budget: AccuracyBudget,
) -> tuple[Checked | None, list[str]]:
    """The solver's best (assignment, codecs) whose codecs keep the accuracy budget.

    Returns ``((solution, accuracy), notes)``, or ``(None, notes)`` when nothing is feasible.
    """
    allowed = [list(space) for _ in range(links)]
    notes: list[str] = []
    for _ in range(links * len(space)):
        sol = solve(allowed)
        if sol is None:
            return None, notes
        acc = accuracy(sol)
        if acc is None or acc.within(budget):
            return (sol, acc), notes
        lossy = [j for j, codec in enumerate(sol.codecs) if not is_lossless(codec)]
        for j in lossy:
            allowed[j].remove(sol.codecs[j])
        notes.append(
            f"codec {'/'.join(sorted({sol.codecs[j] for j in lossy}))} on link(s) {lossy} left out: the plan "
            f"using it breaks the accuracy budget (max rel error {acc.max_rel_error:.3g}, "
            f"top-1 agreement {acc.top1_agreement:.3f})"
        )
        if any(not choice for choice in allowed):
            return None, notes
    return None, notes


def _with_codecs(sol: Solution, codecs: Sequence[str]) -> Solution:
    from dataclasses import replace

    return sol if sol.codecs == tuple(codecs) else replace(sol, codecs=tuple(codecs))
