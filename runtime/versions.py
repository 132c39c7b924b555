"""Plan versions inside a stage actor: the stage module each version's frames run on, loaded
before a switch (``prepare``) or, in an instance restarted after one, fetched from the pipeline's
registry when a frame of a version it lacks arrives (``fetch``)."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from partition.graph import TensorSpec

from .batching import BatchRunner

# Unpickling a stage (a torch.fx GraphModule) traces it again, and tracing patches nn.Module.__call__
# for the whole process: a frame running meanwhile in another thread would be traced instead of run
# ("module is not installed as a submodule"). Frames run, and stages are unpickled, under this lock.
STAGE_LOCK = threading.Lock()


def run_locked(runner: BatchRunner, values: list[dict]) -> list:
    """``runner.run(values)`` under :data:`STAGE_LOCK` (never while a new stage is unpickled)."""
    with STAGE_LOCK:
        return runner.run(values)


def run_timed(runner: BatchRunner, values: list[dict]) -> tuple[list, float]:
    """:func:`run_locked`, and the seconds the run itself took (from the lock held, wherever it ran: no thread hop).
    Whether a stage runs on the event loop is decided on this time, which is the same on the loop and off it."""
    with STAGE_LOCK:
        start = time.perf_counter()
        out = runner.run(values)
        return out, time.perf_counter() - start


def _fetch_stage(ref):
    """The stage behind ``ref``: fetched while frames go on, unpickled while none runs."""
    import ray

    ray.wait([ref], fetch_local=True)
    with STAGE_LOCK:
        return ray.get(ref)


def _probe_runner(*args) -> BatchRunner:
    with STAGE_LOCK:
        return BatchRunner(*args)


__all__ = ["PlanVersions", "Version", "freeze_heap", "run_locked"]


@dataclass
class Version:
    """What a stage runs for frames of one plan version."""

    runner: BatchRunner
    expected: dict[str, TensorSpec | None]
    codec_up: str
    emulated_compute_s: float | None


def freeze_heap() -> None:
    """Keep what is loaded now (torch, the stage modules: some 270,000 objects) out of the garbage
    collector's full passes. Without it, every full pass (one comes with loading a stage for a switch)
    walks them all: 130 ms of CPU per actor, and 21 actors on a small host stall the stream for 1-2 s."""
    gc.collect()
    gc.freeze()


class PlanVersions:
    """The plan versions one stage instance holds: a part of :class:`runtime.actors.StageWorker`.

    Args:
        cfg: the instance's settings (``max_batch``, ``tier``, ``node``).
        device: where its stage modules run.
        registry: the pipeline's plan registry (``get.remote(tier, version)``), or None.
        first: plan version 0's stage.
    """

    def __init__(self, cfg, device: str, registry, first: Version) -> None:
        self.cfg = cfg
        self.device = device
        self.registry = registry
        self.versions: dict[int, Version] = {0: first}
        self.specs: dict[int, dict] = {0: first.expected}  # what each held version's frames carry (for unpack)

    async def prepare(
        self,
        version: int,
        stage_box: list,
        expected: dict,
        codec_up: str,
        emulated_compute_s: float | None,
        keep: Sequence[int] = (),
        same_as: int | None = None,
        batchable: bool | None = None,
    ) -> dict:
        """Load the stage of plan ``version`` before any of its frames come.

        Args:
            stage_box: ``[stage ref]``. In a list, Ray hands over the reference and this call fetches
                it while frames go on: a bare reference argument is fetched before the call starts,
                and the driver's calls to this actor (its frames) would queue behind it.
            keep: versions that new frames still start on (never dropped to make room).
            same_as: a version whose stage is this one (the same nodes, inputs and outputs): its loaded
                module serves, with nothing fetched or probed (a switch back costs nothing here).
            batchable: whether the stage batches, as another instance of this tier found (no probe).
        """
        how = "held"
        if version not in self.versions:
            if same_as in self.versions:
                runner, how = self.versions[same_as].runner, "reused"
            else:
                how = "probed" if batchable is None else "told"
                stage = await asyncio.to_thread(_fetch_stage, stage_box[0])
                runner = await asyncio.to_thread(_probe_runner, stage, expected, self.device, self.cfg.max_batch, batchable)
                freeze_heap()
            self.versions[version] = Version(runner, expected, codec_up, emulated_compute_s)
        for old in sorted(self.versions)[:-3]:  # keep the last three plans: frames of older ones are long done
            if old != 0 and old not in keep:
                del self.versions[old]
        self.specs = {v: state.expected for v, state in self.versions.items()}
        return {
            "node": self.cfg.node,
            "versions": sorted(self.versions),
            "loaded": how,
            "batchable": self.versions[version].runner.batchable,
        }

    async def fetch(self, version: int) -> None:
        """Load plan ``version`` from the registry, if this instance lacks it (a restart after a switch)."""
        if version in self.versions or self.registry is None:
            return
        box = await self.registry.get.remote(self.cfg.tier, version)
        if box is None:
            return
        stage_box, expected, codec_up, emulated = await box[0]
        await self.prepare(version, stage_box, expected, codec_up, emulated)
