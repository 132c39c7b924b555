"""Calibrating exits: per frame of the calibration data, each exit's score and how its answer compares
with the full model; from these, the exit rate and the agreement (or error) of any live set and thresholds.

Exits are met in the model's order and a frame leaves at the first live exit whose rule fires, so
the outcome of a set of thresholds is computed frame by frame, never assuming exits independent.
``agreement`` (max-softmax exits): share of frames whose delivered answer has the full model's
argmax. ``error`` (predicted-error exits): mean over frames of the mean absolute difference between
the delivered answer and the full model's output (0 for frames that do not exit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .errors import ExitError

__all__ = ["ExitBudget", "ExitCalibration", "calibrate", "as_batches"]

DEFAULT_RATES = (0.2, 0.4, 0.6, 0.8, 0.95)  # candidate thresholds: the scores at which these shares exit alone


@dataclass(frozen=True)
class ExitBudget:
    """How far exits may move results from the full model's, on the calibration data.

    Give ``min_agreement`` for max-softmax exits (classification) or ``max_error`` for predicted-error
    exits (regression, in the output's units).
    """

    min_agreement: float | None = None
    max_error: float | None = None

    def __post_init__(self) -> None:
        if (self.min_agreement is None) == (self.max_error is None):
            raise ExitError("an exit budget is min_agreement (classification) or max_error (regression): give exactly one")

    @property
    def kind(self) -> str:
        return "agreement" if self.min_agreement is not None else "error"

    @property
    def bound(self) -> float:
        return float(self.min_agreement if self.min_agreement is not None else self.max_error)

    def within(self, quality: float) -> bool:
        if self.kind == "agreement":
            return quality >= self.bound - 1e-12
        return quality <= self.bound + 1e-12


@dataclass(frozen=True)
class ExitCalibration:
    """Per exit and calibration frame: the rule's score and the answer's agreement (1/0) or error."""

    kind: str  # "agreement" or "error"
    names: tuple[str, ...]
    rules: tuple[str, ...]
    scores: tuple[tuple[float, ...], ...]  # [exits][frames]
    quality: tuple[tuple[float, ...], ...]  # [exits][frames]

    @property
    def frames(self) -> int:
        return len(self.scores[0]) if self.scores else 0

    def outcome(self, thresholds: Mapping[int, float]) -> tuple[np.ndarray, float]:
        """``(share of frames leaving at each exit [exits], agreement or error)`` with exits ``{index: threshold}`` live."""
        scores, quality = np.asarray(self.scores), np.asarray(self.quality)
        n = self.frames
        leave = np.full(n, -1)
        for e in sorted(thresholds):
            t = thresholds[e]
            hit = (scores[e] >= t) if self.rules[e] == "max_softmax" else (scores[e] <= t)
            leave = np.where(hit & (leave < 0), e, leave)
        rates = np.array([(leave == e).mean() if n else 0.0 for e in range(len(self.names))])
        exited = leave >= 0
        got = quality[np.maximum(leave, 0), np.arange(n)]
        if self.kind == "agreement":
            value = float(np.where(exited, got, 1.0).mean()) if n else 1.0
        else:
            value = float(np.where(exited, got, 0.0).mean()) if n else 0.0
        return rates, value

    def thresholds(self, e: int, rates: Sequence[float] = DEFAULT_RATES) -> list[float]:
        """Candidate thresholds of exit ``e``: the scores at which about ``rates`` of the frames exit there alone."""
        s = np.sort(np.asarray(self.scores[e]))
        if self.rules[e] == "max_softmax":  # high score exits: the (1 - rate) quantile
            found = [float(s[min(int(np.floor((1 - r) * len(s))), len(s) - 1)]) for r in rates]
        else:
            found = [float(s[max(int(np.ceil(r * len(s))) - 1, 0)]) for r in rates]
        return sorted(set(found))

    def table(self, rates: Sequence[float] = DEFAULT_RATES) -> list[dict]:
        """Each exit alone at each candidate threshold: ``{exit, threshold, rate, agreement|error}``."""
        rows = []
        for e, name in enumerate(self.names):
            for t in self.thresholds(e, rates):
                share, value = self.outcome({e: t})
                rows.append({"exit": name, "threshold": t, "rate": float(share[e]), self.kind: value})
        return rows

    def to_json(self) -> dict:
        return {"kind": self.kind, "names": list(self.names), "rules": list(self.rules), "scores": self.scores, "quality": self.quality}

    @classmethod
    def from_json(cls, d: Mapping) -> ExitCalibration:
        return cls(d["kind"], tuple(d["names"]), tuple(d["rules"]), tuple(map(tuple, d["scores"])), tuple(map(tuple, d["quality"])))


def as_batches(data, batch: int) -> list[tuple]:
    """``data`` (a tensor ``[N, ...]``, a tuple of them, or a list of input tuples) as input tuples of ``batch`` frames."""
    if isinstance(data, torch.Tensor):
        data = (data,)
    if isinstance(data, tuple) and all(isinstance(x, torch.Tensor) for x in data):
        n = data[0].shape[0]
        return [tuple(x[i : i + batch] for x in data) for i in range(0, n, batch)]
    return [tuple(x) if isinstance(x, (tuple, list)) else (x,) for x in data]


def calibrate(model, data, batch: int = 256) -> ExitCalibration:
    """Score every exit of ``model`` (an :class:`~partition.exits.ExitModel`) on ``data`` against the full model.

    Raises:
        ExitError: the exits mix rules of both kinds (one budget kind per model), or ``data`` is empty.
    """
    from .exit_stage import answer_and_score

    kinds = {"agreement" if e.rule == "max_softmax" else "error" for e in model.exits}
    if len(kinds) != 1:
        raise ExitError(f"exits {[(e.name, e.rule) for e in model.exits]} mix rules; use max_softmax or predicted_error on all")
    kind = kinds.pop()
    scores = [[] for _ in model.exits]
    quality = [[] for _ in model.exits]
    for inputs in as_batches(data, batch):
        full, taps = model.taps(inputs)
        with torch.inference_mode():
            for i, (e, head, tap) in enumerate(zip(model.exits, model.heads, taps)):
                answer, score = answer_and_score(e.rule, head(tap))
                scores[i] += score.tolist()
                if kind == "agreement":
                    q = (answer.argmax(dim=-1) == full.argmax(dim=-1)).reshape(full.shape[0], -1).all(dim=1).float()
                else:
                    q = (answer.float() - full.float()).abs().reshape(full.shape[0], -1).mean(dim=1)
                quality[i] += q.tolist()
    if not scores or not scores[0]:
        raise ExitError("calibration data is empty; give frames the model takes")
    return ExitCalibration(
        kind, tuple(e.name for e in model.exits), tuple(e.rule for e in model.exits), tuple(map(tuple, scores)), tuple(map(tuple, quality))
    )
