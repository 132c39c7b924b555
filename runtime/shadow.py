"""The shadow check: how delivered results compare with the full model, on a sampled share of frames.

Off unless asked for. The driver keeps the inputs of a sampled share of the frames it hands over; when a
sampled frame's result arrives, it runs the full model on those inputs and compares. With early exits
this measures, live, what calibration predicted: ``agreement`` (share of results with the full model's
argmax) or ``error`` (mean absolute difference). A plain class: no Ray, driven by whoever submits frames.

>>> import torch
>>> check = ShadowCheck(torch.nn.Identity(), share=1.0, kind="error")
>>> check.offer((0, 0), (torch.tensor([[1.0, 2.0]]),))
>>> check.check((0, 0), torch.tensor([[1.0, 3.0]]))
>>> check.summary()
{'share': 1.0, 'frames': 1, 'error': 0.5}
"""

from __future__ import annotations

import random
from collections.abc import Hashable

import torch

__all__ = ["ShadowCheck"]


class ShadowCheck:
    """Compare delivered results with ``model`` (the full model) on ``share`` of the frames.

    Args:
        model: the full model (an ``ExitModel``'s ``forward`` is its backbone's).
        share: the share of offered frames to check, 0..1 (sampled with ``seed``).
        kind: ``agreement`` (argmax over the last axis) or ``error`` (mean absolute difference).
        max_pending: sampled frames held at most (the oldest are let go if results never come).
    """

    def __init__(self, model, share: float, kind: str = "error", seed: int = 0, max_pending: int = 4096) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"shadow share {share} must be between 0 and 1")
        if kind not in ("agreement", "error"):
            raise ValueError(f"shadow kind {kind!r}: use 'agreement' or 'error'")
        self.model = model
        self.share = share
        self.kind = kind
        self.max_pending = max_pending
        self.rng = random.Random(seed)
        self.pending: dict[Hashable, tuple] = {}
        self.frames = 0
        self.total = 0.0

    def offer(self, key: Hashable, inputs: tuple) -> None:
        """A frame handed to the pipeline under ``key`` (e.g. ``(source, seq)``); kept if sampled."""
        if self.rng.random() < self.share:
            if len(self.pending) >= self.max_pending:
                self.pending.pop(next(iter(self.pending)))
            self.pending[key] = tuple(x.clone() if isinstance(x, torch.Tensor) else x for x in inputs)

    def check(self, key: Hashable, output) -> None:
        """The delivered result of ``key``: compared with the full model if the frame was sampled."""
        inputs = self.pending.pop(key, None)
        if inputs is None or not isinstance(output, torch.Tensor):
            return
        with torch.inference_mode():
            full = self.model(*inputs)
        if self.kind == "agreement":
            value = float((output.argmax(dim=-1) == full.argmax(dim=-1)).float().mean())
        else:
            value = float((output.float() - full.float()).abs().mean())
        self.frames += 1
        self.total += value

    def summary(self) -> dict:
        return {"share": self.share, "frames": self.frames, self.kind: round(self.total / self.frames, 4) if self.frames else None}
