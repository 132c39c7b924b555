"""Calibration inputs: measured compressor ratios per value, and the accuracy of lossy codecs at a cut."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.fx as fx

from .codec import encode, parse_codec
from .graph import Graph
from .split import build_stages, run_stages

__all__ = ["AccuracyBudget", "Accuracy", "Recorder", "calibration_inputs", "compression_ratios", "measure_accuracy"]

_SAMPLE_BYTES = 1 << 16  # compress a 64 KiB slice of each value: ratio estimate at a fraction of the cost


@dataclass(frozen=True)
class AccuracyBudget:
    """How far a lossy codec may move the model's output from eager, on the calibration inputs.

    ``max_rel_error``: max |y - y_eager| / max |y_eager|; ``min_top1``: share of
    argmax over the class axis that agree, for outputs that have one (see :func:`class_axis`).
    """

    max_rel_error: float = 0.05
    max_abs_error: float | None = None
    min_top1: float = 0.99


@dataclass(frozen=True)
class Accuracy:
    max_abs_error: float
    max_rel_error: float
    top1_agreement: float
    checked: str = ""  # what was checked: which outputs got top-1 on which axis, which relative error only

    def within(self, budget: AccuracyBudget) -> bool:
        return (
            self.max_rel_error <= budget.max_rel_error
            and self.top1_agreement >= budget.min_top1
            and (budget.max_abs_error is None or self.max_abs_error <= budget.max_abs_error)
        )


def calibration_inputs(example_inputs: Sequence, count: int = 4, seed: int = 0) -> list[tuple]:
    """The example inputs plus ``count - 1`` random inputs of the same shapes (float: normal; int: same range)."""
    gen = torch.Generator().manual_seed(seed)
    out = [tuple(example_inputs)]
    for _ in range(count - 1):
        batch = []
        for x in example_inputs:
            if isinstance(x, torch.Tensor) and x.is_floating_point():
                batch.append(torch.randn(x.shape, generator=gen, dtype=x.dtype))
            elif isinstance(x, torch.Tensor):
                hi = int(x.max()) + 1 if x.numel() else 1
                batch.append(torch.randint(0, max(hi, 1), x.shape, generator=gen, dtype=x.dtype))
            else:
                batch.append(x)
        out.append(tuple(batch))
    return out


class Recorder(fx.Interpreter):
    """Runs a captured module and keeps the value of every node (or of the nodes in ``keep``)."""

    def __init__(self, gm: fx.GraphModule, keep: set[str] | None = None) -> None:
        super().__init__(gm)
        self.keep = keep
        self.values: dict[str, object] = {}

    def run_node(self, n: fx.Node):
        out = super().run_node(n)
        if n.op != "output" and (self.keep is None or n.name in self.keep):
            self.values[n.name] = out
        return out


def compression_ratios(graph: Graph, inputs: Sequence, codecs: Sequence[str]) -> dict[tuple[str, str], float]:
    """``{(node, codec): compressed / uncompressed}`` for every codec with a compressor, measured on ``inputs``."""
    with torch.inference_mode():
        rec = Recorder(graph.module)
        rec.run(*inputs)
    out: dict[tuple[str, str], float] = {}
    compressed = [c for c in codecs if parse_codec(c)[1]]
    for node in graph.nodes:
        value = rec.values.get(node.name)
        if not isinstance(value, torch.Tensor) or value.numel() == 0:
            continue
        flat = value.detach().reshape(-1)
        sample = flat[: max(_SAMPLE_BYTES // flat.element_size(), 1)]
        for codec in compressed:
            header, payload = encode(sample, codec)
            out[(node.name, codec)] = len(payload) / max(header["raw_nbytes"], 1)
    return out


def class_axis(path: str, value: torch.Tensor, single: bool) -> int | None:
    """The axis holding classes in an output, or None when it has none (then only relative error counts).

    ``logits`` outputs (by name, as Hugging Face models call them) have their classes on the last
    axis (``[batch, classes]``, ``[batch, tokens, vocabulary]``), except image maps ``[batch,
    classes, h, w]`` (axis 1); a model's single 2-D float output ``[batch, classes]`` is taken as
    classification too. Hidden states, features and embeddings have no class axis.
    """
    if not value.is_floating_point() or value.dim() < 2 or value.shape[-1] < 2 and value.dim() != 4:
        return None
    if "logits" in path.lower():
        return 1 if value.dim() == 4 else value.dim() - 1
    if single and value.dim() == 2:
        return 1
    if single and value.dim() == 4 and value.shape[1] > 1:  # segmentation: per-pixel classes
        return 1
    return None


def measure_accuracy(
    graph: Graph, assignment: dict[str, int], k: int, codecs: Sequence[str], inputs: list[tuple], reference: list | None = None
) -> Accuracy:
    """Run the split model with ``codecs`` at the cuts on ``inputs`` and compare with the uncut graph."""
    stages = build_stages(graph, assignment, k)
    abs_err, rel_err, agree = 0.0, 0.0, []
    checked: dict[str, str] = {}
    with torch.inference_mode():
        for i, x in enumerate(inputs):
            ref = reference[i] if reference is not None else graph.module(*x)
            got = run_stages(stages, x, codecs)
            ref_leaves = torch.utils._pytree.tree_flatten_with_path(ref)[0]
            got_leaves = torch.utils._pytree.tree_leaves(got)
            tensors = [(p, r) for p, r in ref_leaves if isinstance(r, torch.Tensor)]
            for (path, r), g in zip(ref_leaves, got_leaves):
                if not isinstance(r, torch.Tensor) or not r.is_floating_point() or r.numel() == 0:
                    continue
                name = torch.utils._pytree.keystr(path) or "output"
                diff = float((r - g).abs().max())
                abs_err = max(abs_err, diff)
                rel_err = max(rel_err, diff / max(float(r.abs().max()), 1e-12))
                axis = class_axis(name, r, len(tensors) == 1)
                if axis is None:
                    checked[name] = "relative error"
                else:
                    checked[name] = f"top-1 over axis {axis}"
                    agree.append(float((r.argmax(dim=axis) == g.argmax(dim=axis)).float().mean()))
    what = "; ".join(f"{k}: {v}" for k, v in checked.items())
    return Accuracy(abs_err, rel_err, sum(agree) / len(agree) if agree else 1.0, what)
