"""Attaching exit heads and training them by distillation from the model's own output, backbone frozen.

The backbone runs once over the calibration data (inference mode: its weights get no gradient);
each head then learns from the tapped values alone, so training costs a few seconds on a CPU.

- ``max_softmax`` heads learn the full model's class distribution (KL divergence to its softmax).
- ``predicted_error`` heads learn the full model's output (L1) and, in one extra channel, their own
  mean absolute error on the frame (the rule exits when that prediction is small).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .exit_calib import as_batches
from .exit_stage import answer_and_score
from .exits import ExitModel, with_exits

__all__ = ["default_head", "attach", "distill"]

log = logging.getLogger(__name__)


def default_head(tap_shape: Sequence[int], out_features: int, hidden: int = 64) -> nn.Module:
    """A small head for a value of ``tap_shape`` (one frame's batch first): pool, then a two-layer MLP.

    ``[B, C, H, W]`` is pooled to at most 4 x 8 (the width kept finer: lanes, columns), ``[B, T, F]``
    averaged over ``T``; anything else is flattened.
    """
    if len(tap_shape) == 4:
        c, h, w = tap_shape[1:]
        pooled = (min(h, 4), min(w, 8))
        return nn.Sequential(nn.AdaptiveAvgPool2d(pooled), nn.Flatten(), _mlp(c * pooled[0] * pooled[1], hidden, out_features))
    if len(tap_shape) == 3:
        return nn.Sequential(_Mean(1), _mlp(tap_shape[2], hidden, out_features))
    features = 1
    for d in tap_shape[1:]:
        features *= d
    return nn.Sequential(nn.Flatten(), _mlp(features, hidden, out_features))


class _Mean(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return x.mean(dim=self.dim)


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


def attach(
    model: nn.Module,
    points: Sequence[str],
    data,
    rule: str = "max_softmax",
    example_inputs: tuple | None = None,
    steps: int = 300,
    batch: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
) -> ExitModel:
    """Attach a :func:`default_head` at each point and train it by distillation on ``data``.

    Args:
        model: the backbone (eval mode); its weights are not touched.
        points: module paths or node names (``tierpipe profile``).
        data: calibration frames: a tensor ``[N, ...]``, a tuple of them, or a list of input tuples.
        rule: ``max_softmax`` (classification) or ``predicted_error`` (regression).
        steps: optimiser steps per head.

    Returns:
        The :class:`ExitModel`, heads trained and in eval mode.
    """
    batches = as_batches(data, 256)
    example = tuple(example_inputs) if example_inputs is not None else tuple(x[:1] for x in batches[0])
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = model(*example)
    extra = 1 if rule == "predicted_error" else 0
    probe = with_exits(model, {p: nn.Identity() for p in points}, rule="max_softmax", example_inputs=example, check=False)
    _, taps = probe.taps(example)
    heads = {e.name: default_head(tuple(t.shape), out.shape[-1] + extra) for e, t in zip(probe.exits, taps)}
    built = with_exits(model, heads, rule=rule, example_inputs=example)
    distill(built, batches, steps=steps, batch=batch, lr=lr, seed=seed)
    return built.eval()


def distill(model: ExitModel, data, steps: int = 300, batch: int = 64, lr: float = 3e-3, seed: int = 0) -> list[float]:
    """Train every head of ``model`` on ``data`` against the full model's output; returns each head's last loss."""
    start = time.perf_counter()
    fulls, taps = [], [[] for _ in model.exits]
    for inputs in as_batches(data, 256):
        full, tapped = model.taps(inputs)
        fulls.append(full.float())
        for i, t in enumerate(tapped):
            taps[i].append(t.float())
    target = torch.cat(fulls)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for i, (spec, head) in enumerate(zip(model.exits, model.heads)):
        x = torch.cat(taps[i])
        head.train()
        opt = torch.optim.Adam(head.parameters(), lr=lr)
        loss = torch.zeros(())
        for _ in range(steps):
            idx = torch.randint(0, x.shape[0], (min(batch, x.shape[0]),), generator=gen)
            loss = _loss(spec.rule, head(x[idx]), target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        head.eval()
        losses.append(float(loss.detach()))
    log.info("distilled %d exit head(s) on %d frames in %.1f s", len(model.exits), target.shape[0], time.perf_counter() - start)
    return losses


def _loss(rule: str, out: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    if rule == "max_softmax":
        return F.kl_div(F.log_softmax(out, dim=-1), F.softmax(teacher, dim=-1), reduction="batchmean")
    answer, predicted = answer_and_score(rule, out)
    actual = (answer - teacher).abs().reshape(teacher.shape[0], -1).mean(dim=1).detach()
    return F.l1_loss(answer, teacher) + F.l1_loss(predicted, actual)
