"""Fan-in batching: run the frames queued at a stage as one tensor, then split the results.

Whether a stage may be batched is not guessed: at start-up the stage runs two
random frames one by one and as one batch, and batching is on only if the
results agree (a stage that computes a batch size into an int, for example,
stays frame by frame). Batched float results equal frame-by-frame ones up to
float reassociation in the kernels (``assert_close`` tolerances).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import weakref

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from partition.graph import TensorSpec
from partition.split import Stage

__all__ = ["BatchRunner"]

log = logging.getLogger(__name__)


_MOVED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # a stage module -> {device: its copy there}


def _moved(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``module`` on ``device``, as a copy (the caller's model keeps its parameters where they are), one copy
    per module and device: the nodes of a packed process that run one stage share it, and batch together."""
    copies = _MOVED.setdefault(module, {})
    if device not in copies:
        copies[device] = copy.deepcopy(module).to(device)
    return copies[device]


class BatchRunner:
    """Runs a stage on a list of frames (``{name: value}`` each), batched when that is safe."""

    def __init__(
        self, stage: Stage, expected: dict[str, TensorSpec | None], device: str = "cpu", max_batch: int = 8, batchable: bool | None = None
    ) -> None:
        """``batchable``: what a probe of the same stage found elsewhere (another instance of its tier):
        no probe here then."""
        self.device = torch.device(device)
        tensors = [*stage.module.parameters(), *stage.module.buffers()]
        if any(t.device != self.device for t in tensors):  # a stage built in this process shares the model's tensors: move a copy
            stage = dataclasses.replace(stage, module=_moved(stage.module, self.device))
        self.stage = stage
        self.expected = expected
        self.batchable = max_batch > 1 and (self._probe() if batchable is None else batchable)

    def _call(self, values: dict):
        if self.device.type != "cpu":
            values = {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in values.items()}
        with torch.inference_mode():
            out = self.stage(values)
        if self.device.type != "cpu":
            leaves, spec = tree_flatten(out)
            out = tree_unflatten([x.cpu() if isinstance(x, torch.Tensor) else x for x in leaves], spec)
        return out

    def run(self, frames: list[dict]) -> list:
        if len(frames) == 1 or not self.batchable:
            return [self._call(f) for f in frames]
        batched = {k: torch.cat([f[k] for f in frames]) for k in frames[0]}
        return _split(self._call(batched), len(frames))

    def _probe(self) -> bool:
        specs = list(self.expected.values())
        if not specs or any(s is None or s.shape is None or not s.shape for s in specs):
            return False
        gen = torch.Generator().manual_seed(0)

        def sample():
            out = {}
            for name, s in self.expected.items():
                dtype = getattr(torch, s.dtype)
                out[name] = (
                    torch.randn(s.shape, generator=gen, dtype=dtype) if dtype.is_floating_point else torch.zeros(s.shape, dtype=dtype)
                )
            return out

        try:
            a, b = sample(), sample()
            one = [self._call(a), self._call(b)]
            both = _split(self._call({k: torch.cat([a[k], b[k]]) for k in a}), 2)
            for x, y in zip(one, both):
                torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-5, equal_nan=True)
            return True
        except Exception as exc:
            log.info("stage %r runs frame by frame: %s", self.stage.spec.tier_name, str(exc).splitlines()[0][:200])
            return False


def _split(out, n: int) -> list:
    leaves, spec = tree_flatten(out)
    parts = []
    for leaf in leaves:
        if not isinstance(leaf, torch.Tensor) or leaf.dim() == 0 or leaf.shape[0] % n:
            raise ValueError(f"cannot split a {type(leaf).__name__} of a batch of {n} back into frames")
        parts.append(leaf.chunk(n))
    return [tree_unflatten([p[i] for p in parts], spec) for i in range(n)]
