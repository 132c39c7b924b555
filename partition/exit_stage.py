"""Early exits on the per-frame path: the confidence rules and a stage that answers easy frames itself.

A stage with live exits runs its stage module, then each live exit's head on the value it taps, in
order along the model; a frame whose rule fires at an exit is answered there (the head's answer has
the shape of the model's output) and later exits and stages do not see it. Exits are evaluated at
the end of their tier's stage: the frame still costs its whole stage there, and nothing above it
but a small result frame.

    stage outputs  {name: [B, ...]}  +  __exit__ int64 [B] (exit index, -1: goes on)  +  __answer__ [B, ...]

:func:`settle` turns one frame's outputs into what it sends on: its activations, or (exited) only
``{__exit__: index, __answer__: answer}``. Stage nodes load this module: torch and ``split`` only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .codec import roundtrip
from .errors import ExitError, StageError
from .split import Stage, StageSpec, make_stage

__all__ = [
    "RULES",
    "EXIT_AT",
    "ANSWER",
    "LiveExit",
    "ExitStage",
    "answer_and_score",
    "fires",
    "apply_exits",
    "exit_stage",
    "run_with_exits",
    "settle",
    "is_exited",
]

RULES = ("max_softmax", "predicted_error")
EXIT_AT = "__exit__"
ANSWER = "__answer__"


@dataclass(frozen=True)
class LiveExit:
    """One exit a plan turns on: plain data.

    ``index``: its position among the model's exits; ``node``: the captured value its head reads;
    ``tier``: the tier whose stage evaluates it; ``threshold``: max softmax at least this
    (``max_softmax``) or predicted error at most this (``predicted_error``) answers the frame.
    """

    index: int
    name: str
    node: str
    tier: int
    rule: str
    threshold: float

    def to_json(self) -> dict:
        return {
            "index": self.index,
            "name": self.name,
            "node": self.node,
            "tier": self.tier,
            "rule": self.rule,
            "threshold": self.threshold,
        }

    @classmethod
    def from_json(cls, d: Mapping) -> LiveExit:
        return cls(int(d["index"]), d["name"], d["node"], int(d["tier"]), d["rule"], float(d["threshold"]))


def answer_and_score(rule: str, head_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's answer (shaped like the model's output) and its per-frame score ``[B]``.

    ``max_softmax``: the answer is the head's logits, the score the least (over positions) of the
    largest class probability. ``predicted_error``: the head's last channel predicts its own mean
    absolute error (through softplus); the answer is the other channels, the score that prediction.
    """
    if rule == "max_softmax":
        return head_out, F.softmax(head_out.float(), dim=-1).amax(dim=-1).reshape(head_out.shape[0], -1).amin(dim=1)
    if rule == "predicted_error":
        return head_out[..., :-1], F.softplus(head_out[..., -1].float()).reshape(head_out.shape[0], -1).mean(dim=1)
    raise ExitError(f"unknown exit rule {rule!r}; use one of {RULES}")


def fires(rule: str, score: torch.Tensor, threshold: float) -> torch.Tensor:
    """Per frame: does the rule answer here (confident enough, or small enough predicted error)."""
    return score >= threshold if rule == "max_softmax" else score <= threshold


def apply_exits(exits: Sequence[tuple[LiveExit, nn.Module]], taps: Mapping[str, torch.Tensor], batch: int):
    """``(exit index per frame [B] (-1: none fired), answer per frame or None)`` of the first live exit that fires."""
    exit_at = torch.full((batch,), -1, dtype=torch.long)
    answer = None
    for e, head in exits:
        ans, score = answer_and_score(e.rule, head(taps[e.node]))
        hit = fires(e.rule, score, e.threshold) & (exit_at < 0)
        if answer is None:
            answer = torch.zeros_like(ans)
        answer = torch.where(hit.view(-1, *([1] * (ans.dim() - 1))), ans, answer)
        exit_at = torch.where(hit, torch.full_like(exit_at, e.index), exit_at)
    return exit_at, answer


class ExitStage:
    """A non-last stage with live exits: what :class:`~partition.split.Stage` returns, plus ``__exit__`` and
    ``__answer__`` per frame (rows of the batch). ``stage`` is built to also return the tapped values."""

    last = False

    def __init__(self, stage: Stage, spec: StageSpec, exits: Sequence[tuple[LiveExit, nn.Module]]) -> None:
        if not exits:
            raise ExitError(f"stage {spec.tier_name!r}: an ExitStage needs at least one live exit")
        self.stage = stage
        self.spec = spec  # what the plan says this stage receives and sends (without the taps)
        self.outputs = tuple(spec.outputs)
        self.exits = [(e, head.eval()) for e, head in exits]
        self.module = nn.ModuleList([stage.module, *(head for _, head in self.exits)])  # moved together by .to()

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.spec.inputs

    def __call__(self, values: Mapping[str, object]) -> dict:
        out = self.stage(values)
        first = out[self.exits[0][0].node]
        exit_at, answer = apply_exits(self.exits, out, first.shape[0])
        result = {k: out[k] for k in self.outputs}
        result[EXIT_AT] = exit_at
        result[ANSWER] = answer
        return result


def settle(values: dict) -> dict:
    """One frame's stage outputs as they travel on: unchanged without exits, its activations when no exit
    fired, or ``{__exit__: index, __answer__: answer}`` when one did."""
    if not isinstance(values, dict) or EXIT_AT not in values:
        return values
    at = values[EXIT_AT]
    at = int(at.reshape(-1)[0]) if isinstance(at, torch.Tensor) else int(at)
    if at >= 0:
        return {EXIT_AT: at, ANSWER: values[ANSWER]}
    return {k: v for k, v in values.items() if k not in (EXIT_AT, ANSWER)}


def is_exited(values) -> bool:
    """A frame answered by an exit below: stages above pass it on, the sink delivers its answer."""
    return isinstance(values, dict) and EXIT_AT in values and ANSWER in values and not isinstance(values[EXIT_AT], torch.Tensor)


def exit_stage(gm, spec: StageSpec, exits: Sequence[tuple[LiveExit, nn.Module]]) -> ExitStage:
    """The stage of ``spec`` cut from ``gm``, also returning the values its exits tap, with those exits."""
    taps = tuple(dict.fromkeys(e.node for e, _ in exits if e.node not in spec.outputs))
    wide = StageSpec(spec.tier, spec.tier_name, spec.nodes, spec.inputs, spec.outputs + taps)
    return ExitStage(make_stage(gm, wide, False), spec, exits)


def run_with_exits(stages: Sequence, inputs: Sequence[torch.Tensor], codecs: Sequence[str] | None = None):
    """Run stages in this process as a pipeline would, frames leaving at their exits: ``(outputs, exit index per frame)``.

    The rows of one batch are the frames; a frame that exits keeps its answer and the rest go on (stages
    must take any batch size). Values crossing a link go through its codec, as in ``run_stages``.
    """
    values: dict[str, object] = dict(zip(stages[0].inputs, inputs))
    n = next(v.shape[0] for v in values.values() if isinstance(v, torch.Tensor))
    rows = torch.arange(n)
    results: list = [None] * n
    exit_at = torch.full((n,), -1, dtype=torch.long)
    with torch.inference_mode():
        for t, stage in enumerate(stages):
            out = stage(values)
            if stage.last:
                for i, r in enumerate(rows.tolist()):
                    results[r] = out[i : i + 1]
                return torch.cat(results), exit_at
            if EXIT_AT in out:
                at, answer = out.pop(EXIT_AT), out.pop(ANSWER)
                hit = at >= 0
                for i in torch.nonzero(hit).flatten().tolist():
                    results[int(rows[i])], exit_at[rows[i]] = answer[i : i + 1], at[i]
                rows, out = rows[~hit], {k: v[~hit] for k, v in out.items()}
                if not len(rows):
                    return torch.cat(results), exit_at
            codec = codecs[t] if codecs else "raw"
            values = {k: (roundtrip(v.clone(), codec) if isinstance(v, torch.Tensor) else v) for k, v in out.items()}
    raise StageError("no stages to run")
