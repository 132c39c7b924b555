"""Declaring early exits: small heads on points of an unmodified model, each with a confidence rule.

>>> import torch
>>> from torch import nn
>>> model, x = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 10)).eval(), torch.randn(2, 16)
>>> m = with_exits(model, {"1": nn.Linear(16, 10)}, rule="max_softmax", example_inputs=(x,))  # after the ReLU
>>> [(e.name, e.node, e.rule) for e in m.exits]
[('1', '_1', 'max_softmax')]
>>> out, exit_at = m.decide((x,), {"1": 0.0})   # threshold 0: every frame exits there
>>> exit_at.tolist()
[0, 0]

A point is a module path (the value leaving that module) or a captured node name. Exits must lie
on one path through the model (each exit's value is computed from the one before), so the order
in which a split model meets them is the model's order. ``forward`` is the backbone's: the full
model; :meth:`ExitModel.decide` applies the rule per frame, as a split pipeline with the same
live exits and thresholds does.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .errors import ExitError
from .exit_stage import RULES, LiveExit, apply_exits

__all__ = ["ExitSpec", "ExitModel", "with_exits", "tap_node"]


@dataclass(frozen=True)
class ExitSpec:
    """One declared exit: the point as the user named it, the captured node its head reads, its rule."""

    name: str
    node: str
    rule: str


def tap_node(graph, point: str) -> str:
    """The captured node an exit at ``point`` reads: the node itself, or the one value leaving module ``point``.

    Raises:
        ExitError: ``point`` names no node or module, or several values leave the module.
    """
    if point in graph.index:
        return point
    inside = [n for n in graph.nodes if n.module == point or n.module.startswith(point + ".")]
    if not inside:
        tops = sorted({n.module.split(".")[0] for n in graph.nodes if n.module})
        raise ExitError(
            f"exit point {point!r} is neither a node nor a module path of the model; its top-level modules are {tops[:12]} "
            "(name a submodule such as 'layer2', or a node from `tierpipe profile`)"
        )
    names = {n.name for n in inside}
    leaving = [n.name for n in inside if n.name in graph.outputs or any(c not in names for c in graph.consumers[n.name])]
    if len(leaving) != 1:
        raise ExitError(
            f"exit point {point!r}: {len(leaving)} values leave that module ({leaving[:6]}); an exit reads one value: "
            "name one of these nodes instead"
        )
    return leaving[0]


def _check_one_path(graph, nodes: Sequence[str], names: Sequence[str]) -> None:
    """Every exit's node must have the previous exit's node among its ancestors."""
    for (a, na), (b, nb) in zip(zip(nodes, names), list(zip(nodes, names))[1:]):
        seen, todo = set(), [b]
        while todo:
            v = todo.pop()
            for u in graph[v].inputs:
                if u not in seen:
                    seen.add(u)
                    todo.append(u)
        if a not in seen and a != b:
            raise ExitError(
                f"exits {na!r} and {nb!r} lie on parallel branches; exits must lie on one path of the model "
                "(each computed from the one before), so that every split meets them in the same order"
            )


class ExitModel(nn.Module):
    """A backbone with exit heads. ``forward`` is the full model; :meth:`decide` applies the exit rule.

    Build it with :func:`with_exits` (heads you trained) or ``partition.exit_train.attach`` (heads
    trained here by distillation). ``exits`` lists the exits in the model's order.
    """

    def __init__(self, backbone: nn.Module, heads: Sequence[nn.Module], exits: Sequence[ExitSpec], example_inputs: tuple) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleList(heads)
        self.exits = tuple(exits)
        self.example_inputs = tuple(example_inputs)

    def forward(self, *inputs):
        return self.backbone(*inputs)

    @functools.cached_property
    def graph(self):
        """The backbone as captured (analytic timing: no measuring)."""
        from .tracer import capture

        return capture(self.backbone, self.example_inputs, timing="analytic")

    def index(self, name: str) -> int:
        for i, e in enumerate(self.exits):
            if e.name == name or e.node == name:
                return i
        raise ExitError(f"no exit {name!r}; this model's exits are {[e.name for e in self.exits]}")

    def head(self, name: str) -> nn.Module:
        return self.heads[self.index(name)]

    def taps(self, inputs: tuple) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The full output and every exit's tapped value for ``inputs`` (one batch)."""
        from .calibration import Recorder

        rec = Recorder(self.graph.module, {e.node for e in self.exits})
        with torch.inference_mode():
            out = rec.run(*inputs)
        return out, [rec.values[e.node] for e in self.exits]

    def live(self, thresholds: Mapping[str, float], tiers: Mapping[str, int] | None = None) -> list[LiveExit]:
        """:class:`LiveExit` of each exit named in ``thresholds`` (by point or node), in the model's order."""
        chosen = {self.index(name): float(t) for name, t in thresholds.items()}
        tiers = tiers or {}
        return [
            LiveExit(i, e.name, e.node, int(tiers.get(e.name, tiers.get(e.node, 0))), e.rule, chosen[i])
            for i, e in enumerate(self.exits)
            if i in chosen
        ]

    def decide(self, inputs: tuple, thresholds: Mapping[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply the rule per frame: ``(outputs, exit index per frame)``; a frame no live exit answers gets
        the full model's output and index -1.

        Args:
            thresholds: ``{exit name: threshold}`` of the live exits (see :class:`LiveExit`).
        """
        full, taps = self.taps(inputs)
        values = {e.node: t for e, t in zip(self.exits, taps)}
        live = [(e, self.heads[e.index]) for e in self.live(thresholds)]
        if not live:
            return full, torch.full((full.shape[0],), -1, dtype=torch.long)
        with torch.inference_mode():
            exit_at, answer = apply_exits(live, values, full.shape[0])
        hit = (exit_at >= 0).view(-1, *([1] * (full.dim() - 1)))
        return torch.where(hit, answer.to(full.dtype), full), exit_at


def with_exits(
    model: nn.Module,
    heads: Mapping[str, nn.Module],
    rule: str | Mapping[str, str] = "max_softmax",
    example_inputs: tuple | torch.Tensor | None = None,
    check: bool = True,
) -> ExitModel:
    """Declare exit heads on ``model``: ``{point: head}``, each head mapping the point's value to an answer.

    Args:
        model: the unmodified backbone (eval mode).
        heads: point (module path or node name) -> head. ``max_softmax`` heads return logits shaped like
            the model's output; ``predicted_error`` heads return the model's output plus one last channel
            that predicts their own mean absolute error.
        rule: one rule for every head, or ``{point: rule}``; :data:`~partition.exit_stage.RULES`.
        example_inputs: what the model takes (to capture it and check the heads' shapes).
        check: run each head once on the example and check its output's shape.

    Raises:
        ExitError: an unknown point or rule, exits on parallel branches, or a head whose output does not
            match the model's (names the exit, the shapes and the fix).
    """
    if example_inputs is None:
        raise ExitError("with_exits needs example_inputs (what the model takes) to find the exit points")
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    if not heads:
        raise ExitError("with_exits got no heads; give {point: head}, e.g. {'layer2': nn.Linear(128, 10)}")
    rules = {p: (rule if isinstance(rule, str) else rule.get(p, "")) for p in heads}
    for p, r in rules.items():
        if r not in RULES:
            raise ExitError(f"exit {p!r}: rule {r!r} is not one of {RULES}")
    probe = ExitModel(model, [], [], inputs)
    graph = probe.graph
    if len(graph.outputs) != 1:
        raise ExitError(f"early exits need a model with one tensor output; this one returns {len(graph.outputs)} values {graph.outputs}")
    nodes = {p: tap_node(graph, p) for p in heads}
    order = sorted(heads, key=lambda p: graph.index[nodes[p]])
    _check_one_path(graph, [nodes[p] for p in order], order)
    specs = [ExitSpec(p, nodes[p], rules[p]) for p in order]
    built = ExitModel(model, [heads[p] for p in order], specs, inputs)
    built.__dict__["graph"] = graph  # captured once
    if not check:
        return built.eval()
    full, taps = built.taps(inputs)
    for spec, head, tap in zip(specs, built.heads, taps):
        with torch.inference_mode():
            got = head(tap)
        want = tuple(full.shape) if spec.rule == "max_softmax" else (*full.shape[:-1], full.shape[-1] + 1)
        if tuple(got.shape) != want:
            raise ExitError(
                f"exit {spec.name!r} ({spec.rule}): its head returns {list(got.shape)} from {list(tap.shape)}, the model's output "
                f"is {list(full.shape)}, so the head must return {list(want)}"
                + (" (the answer plus one channel predicting its error)" if spec.rule == "predicted_error" else "")
            )
    return built.eval()
