"""``Pipeline``: a plan's stages as Ray actors across the tiers of a topology.

One stage actor per tier node (as the topology's fan-in says) and one source
actor per device node with input streams. Actors push frames straight to the
next tier; the driver only hands inputs to the sources and takes results from
the sink, acknowledging them so every sender can forget what was delivered.

>>> from partition import Topology, capture, partition
>>> from partition.zoo import get_model
>>> model, inputs = get_model("resnet18")
>>> plan = partition(capture(model, inputs), Topology.load("local"))
>>> with Pipeline(plan, model, Topology.load("local")) as pipe:   # doctest: +SKIP
...     outputs = pipe.run([inputs] * 8)
"""

from __future__ import annotations

import logging
import os
import time
from typing import Callable, Sequence

import torch

from partition.graph import TensorSpec
from partition.plan import Plan
from partition.topology import Topology

from .actors import StageConfig, StageWorker
from .errors import PipelineError, StageError
from .wire import Frame, pack

__all__ = ["Pipeline"]

log = logging.getLogger(__name__)
TIER_LABEL, NODE_LABEL = "tier", "tier-node"


class Pipeline:
    """Run ``plan`` over ``topology``: a context manager.

    Args:
        plan: from :func:`partition.partition` (or ``Plan.load``).
        model: the unmodified model; each actor gets only its own stage of it.
        topology: tiers, nodes, fan-in, sources; ``emulate`` comes from it unless given.
        address: ``None`` starts a local Ray for you (everything on this machine);
            otherwise an existing cluster (``"auto"``, ``"ray://..."``, ``"host:6379"``)
            whose nodes carry ``tier`` / ``tier-node`` labels.
        max_batch, max_wait_ms: fan-in batching at each stage.
        credits: frames in flight per link.
    """

    def __init__(self, plan: Plan, model: torch.nn.Module, topology: Topology, address: str | None = None, *,
                 emulate: bool | None = None, max_batch: int = 8, max_wait_ms: float = 2.0, credits: int = 4,
                 queue_frames: int = 64, threads: int = 1, stall_s: float = 3.0, ready_timeout_s: float = 120.0) -> None:
        if list(plan.tiers) != [t.name for t in topology.path]:
            raise PipelineError(f"plan is for tiers {list(plan.tiers)} but topology {topology.name!r} has "
                                f"{[t.name for t in topology.path]}; partition for this topology")
        self.plan, self.model, self.topology, self.address = plan, model, topology, address
        self.emulate = topology.emulate if emulate is None else emulate
        self.max_batch, self.max_wait_s, self.credits = max_batch, max_wait_ms / 1e3, credits
        self.queue_frames, self.threads, self.stall_s, self.ready_timeout_s = queue_frames, threads, stall_s, ready_timeout_s
        self.stages: dict[str, object] = {}            # node -> actor handle
        self.sources: dict[str, object] = {}           # device node -> its stage actor, which hosts its cameras
        self.stream_nodes = topology.source_nodes()    # source id -> device node
        self.tier_of = {node: i for i, tier in enumerate(topology.path) for node in tier.node_names()}
        self._own_ray = False
        self._module_refs: list = []
        self._next_seq: dict[int, int] = {}
        self._delivered: dict[int, int] = {}
        self._sink_incarnation: dict[str, str] = {}
        self._started = 0.0
        self._results_total = 0
        self._wall_s = 0.0

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "Pipeline":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        import ray

        if self.address is None:
            if not ray.is_initialized():
                ray.init(num_cpus=max(os.cpu_count() or 2, 2), include_dashboard=False, logging_level=logging.WARNING)
                self._own_ray = True
        elif not ray.is_initialized():
            from .cluster import token_path, use_token

            if token_path().exists():      # a cluster from `tierpipe cluster up/local`: use its token
                use_token()
            ray.init(address=self.address, logging_level=logging.WARNING)
        labelled = self._labelled_nodes()
        stage_modules = self.plan.build_stages(self.model)
        worker = ray.remote(max_restarts=-1, max_task_retries=0)(StageWorker)
        scales = self._tier_scales()
        last = len(self.plan.tiers) - 1
        for t in reversed(range(last + 1)):
            tier = self.topology.path[t]
            module_ref = ray.put(stage_modules[t])       # each instance of tier t gets stage t only
            self._module_refs.append(module_ref)          # kept in scope: a restarted actor needs it again
            for node in tier.node_names():
                link = self.topology.links[t] if t < last else None
                cfg = StageConfig(
                    tier=t, tier_name=tier.name, node=node, expected=self._expected(t),
                    codec_up=self.plan.codecs[t] if t < last else "raw",
                    link={"bandwidth_mbps": link.bandwidth_mbps, "latency_ms": link.latency_ms,
                          "jitter_ms": link.jitter_ms, "loss": link.loss} if link else None,
                    emulate=self.emulate, scale=scales[t], emulated_compute_s=self.plan.predicted.stage_compute_s[t], max_batch=self.max_batch, max_wait_s=self.max_wait_s,
                    credits=self.credits, queue_frames=self.queue_frames, threads=self.threads,
                    device=tier.accelerator, last=t == last)
                parent = self.stages[self.topology.parents[node]] if t < last else None
                self.stages[node] = worker.options(name=None, **self._placement(node, tier.name, labelled)).remote(
                    cfg, module_ref, parent)
        for node in dict.fromkeys(self.stream_nodes):
            self.sources[node] = self.stages[node]
        self._wait_ready()
        self._started = time.perf_counter()

    def close(self) -> None:
        import ray

        try:
            ray.get([h.shutdown.remote() for h in self.stages.values()], timeout=5)
        except Exception:  # an actor already gone: nothing to stop
            pass
        for handle in self.stages.values():
            try:
                ray.kill(handle, no_restart=True)
            except Exception:  # already gone
                pass
        self.stages.clear()
        self.sources.clear()
        if self._own_ray and ray.is_initialized():
            ray.shutdown()
            self._own_ray = False

    # ------------------------------------------------------------------ placement
    def _labelled_nodes(self) -> list[dict]:
        import ray

        if self.address is None:
            return []
        return [n.get("Labels", {}) for n in ray.nodes() if n.get("Alive")]

    def _gpu_share(self, tier: str) -> float:
        """GPUs for one actor of a cuda tier: Ray hides the GPUs from actors that ask for none."""
        import ray

        spec = next(t for t in self.topology.path if t.name == tier)
        gpus = ray.cluster_resources().get("GPU", 0.0)
        if spec.accelerator != "cuda" or gpus <= 0:
            return 0.0
        cuda_actors = sum(t.nodes for t in self.topology.path if t.accelerator == "cuda")
        return min(1.0, gpus / cuda_actors)

    def _placement(self, node: str, tier: str, labelled: list[dict]) -> dict:
        opts: dict = {"num_cpus": 0}
        gpus = self._gpu_share(tier)
        if gpus:
            opts["num_gpus"] = gpus
        if self.address is None:
            return opts                                  # the local default: everything on this machine
        if any(l.get(NODE_LABEL) == node for l in labelled):
            opts["label_selector"] = {NODE_LABEL: node}
        elif any(l.get(TIER_LABEL) == tier for l in labelled):
            opts["label_selector"] = {TIER_LABEL: tier}
        else:
            have = sorted({f"{k}={v}" for l in labelled for k, v in l.items() if not k.startswith("ray.io")})
            raise PipelineError(f"no Ray node of tier {tier!r} for {node}: no alive node has label {NODE_LABEL}={node} "
                                f"or {TIER_LABEL}={tier} (labels seen: {have or 'none'}). Start that tier's machines "
                                f"with `tierpipe cluster up` or `ray start --labels {TIER_LABEL}={tier},{NODE_LABEL}={node}`")
        return opts

    def _wait_ready(self) -> None:
        import ray

        pending = {h.hello.remote(): n for n, h in self.stages.items()}
        ready, waiting = ray.wait(list(pending), num_returns=len(pending), timeout=self.ready_timeout_s)
        if waiting:
            names = sorted(pending[r] for r in waiting)
            raise PipelineError(f"actors for {names} did not start within {self.ready_timeout_s:.0f} s: their tier's nodes "
                                "are missing, full, or cannot import tierpipe. Check `tierpipe cluster status`")
        ray.get(ready)

    def _tier_scales(self) -> list[float]:
        if self.plan.tier_scale:
            return list(self.plan.tier_scale)
        return [1.0 / t.speed if t.speed else 1.0 for t in self.topology.path]

    def _expected(self, t: int) -> dict[str, TensorSpec | None]:
        spec = self.plan.stages[t]
        if t == 0:
            return dict(zip(spec.inputs, self.plan.inputs))
        return {c.name: (TensorSpec(c.shape, c.dtype, c.raw_bytes) if c.shape is not None else None)
                for c in self.plan.links[t - 1].tensors}

    # ------------------------------------------------------------------ running
    def _check_input(self, i: int, x: tuple) -> None:
        if len(x) != len(self.plan.inputs):
            raise PipelineError(f"input {i} has {len(x)} values, the model takes {len(self.plan.inputs)}")
        for j, (value, spec) in enumerate(zip(x, self.plan.inputs)):
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != spec.shape \
                    or str(value.dtype).removeprefix("torch.") != spec.dtype:
                got = f"{list(value.shape)} {value.dtype}" if isinstance(value, torch.Tensor) else type(value).__name__
                raise PipelineError(f"input {i}, value {j}: got {got}, the plan expects {list(spec.shape)} {spec.dtype}; "
                                    "partition again for this input shape (--input-shape)")

    def run(self, inputs: Sequence, source: int | None = None, timeout_s: float = 300.0) -> list:
        """Run a finite list of input tuples through the pipeline; outputs in the same order.

        Inputs are spread over the topology's streams (or all given to ``source``),
        so fan-in and batching are exercised. Lossless: the sources wait for credits.

        Raises:
            StageError: a stage failed on some input (the message names it); other inputs still ran.
            PipelineError: bad inputs, or no progress within ``timeout_s``.
        """

        inputs = [x if isinstance(x, (tuple, list)) else (x,) for x in inputs]
        names = self.plan.stages[0].inputs
        by_node: dict[str, list] = {}
        keys = []
        for i, x in enumerate(inputs):
            self._check_input(i, x)
            src = source if source is not None else i % len(self.stream_nodes)
            if not 0 <= src < len(self.stream_nodes):
                raise PipelineError(f"source {src} does not exist; the topology has {len(self.stream_nodes)} streams")
            seq = self._next_seq.get(src, 0)
            self._next_seq[src] = seq + 1
            keys.append((src, seq))
            frame = Frame(src, seq, [time.time()], dict(zip(names, x)))
            by_node.setdefault(self.stream_nodes[src], []).append((src, seq, pack(frame)))
        self._unfed = {(src, seq): (node, data) for node, frames in by_node.items() for src, seq, data in frames}
        for node, frames in by_node.items():
            self.sources[node].feed.remote([data for _, _, data in frames])
        results = self._collect(set(keys), timeout_s)
        self._unfed = {}
        outs = [results[k] for k in keys]
        errors = [(i, o) for i, o in enumerate(outs) if isinstance(o, StageError)]
        if errors:
            raise StageError(f"{len(errors)} of {len(outs)} inputs failed; first, input {errors[0][0]}: {errors[0][1]}")
        return outs

    def _collect(self, wanted: set, timeout_s: float, on_result: Callable | None = None,
                 until: Callable[[], bool] | None = None) -> dict:
        import ray

        out: dict = {}
        sinks = {n: h for n, h in self.stages.items() if self.tier_of[n] == len(self.plan.tiers) - 1}
        start = last_progress = last_ack = time.perf_counter()
        while (wanted and not wanted <= out.keys()) or (until is not None and not until()):
            refs = {node: h.take.remote(4096, 0.05) for node, h in sinks.items()}
            replies = []
            for node, ref in refs.items():
                try:
                    replies.append((node, ray.get(ref)))
                except (ray.exceptions.ActorUnavailableError, ray.exceptions.RayActorError) as exc:
                    log.warning("sink %s unavailable (%s); waiting for its restart", node, type(exc).__name__)
                    time.sleep(0.2)
            for node, reply in replies:
                handle = sinks[node]
                if self._sink_incarnation.setdefault(node, reply["incarnation"]) != reply["incarnation"]:
                    self._sink_incarnation[node] = reply["incarnation"]
                    handle.advance.remote(dict(self._delivered))     # the restarted sink skips what we have
                for src, seq, value, latency in reply["results"]:
                    if seq <= self._delivered.get(src, -1) or (src, seq) in out:
                        continue                                      # a replayed duplicate
                    out[(src, seq)] = value
                    self._delivered[src] = seq
                    self._results_total += 1
                    if on_result:
                        on_result(src, seq, value, latency)
                    last_progress = time.perf_counter()
            now = time.perf_counter()
            if now - last_ack > 0.1:
                for h in self.stages.values():
                    h.ack.remote(dict(self._delivered))
                last_ack = now
            if now - last_progress > self.stall_s and (wanted - out.keys() or until is not None):
                log.warning("no result for %.1f s: re-feeding undelivered inputs and asking every stage to replay "
                            "what is unacknowledged", self.stall_s)
                self._refeed(out)
                for h in self.stages.values():
                    h.replay_all.remote()
                last_progress = time.perf_counter()
            if now - start > timeout_s:
                raise PipelineError(f"{len(wanted - out.keys())} of {len(wanted)} frames missing after {timeout_s:.0f} s; "
                                    f"per-stage state: {self._brief()}")
        self._wall_s += time.perf_counter() - start
        for h in self.stages.values():
            h.ack.remote(dict(self._delivered))
        return out

    def _refeed(self, have: dict) -> None:
        """Inputs handed to a device stage that may have died with them: feed them again (the sink drops repeats)."""
        import ray

        todo: dict[str, list] = {}
        for key, (node, data) in getattr(self, "_unfed", {}).items():
            if key not in have and key[1] > self._delivered.get(key[0], -1):
                todo.setdefault(node, []).append(data)
        for node, frames in todo.items():
            try:
                ray.get(self.sources[node].hello.remote(), timeout=30)     # wait for its restart
            except Exception as exc:
                log.warning("device stage %s not back yet (%s)", node, type(exc).__name__)
                continue
            self.sources[node].feed.remote(frames)

    def stream(self, seconds: float, fps: float | None = None, inputs: Sequence | None = None,
               on_update: Callable[[dict], None] | None = None, drain_s: float = 60.0) -> dict:
        """Live sources: every stream produces frames at ``fps`` (the topology's by default) for ``seconds``.

        ``drop-oldest`` streams drop stale frames at the camera (counted in the report);
        ``block`` streams wait. Returns the report; ``on_update(report)`` is called about twice a second.
        """
        import ray

        fps = fps or (self.topology.sources[0].fps if self.topology.sources else 10.0)
        policy = self.topology.sources[0].policy if self.topology.sources else "block"
        samples = inputs or [self.plan.example_inputs()]
        names = self.plan.stages[0].inputs
        frames = [dict(zip(names, x if isinstance(x, (tuple, list)) else (x,))) for x in samples]
        per_node: dict[str, list[int]] = {}
        for src, node in enumerate(self.stream_nodes):
            per_node.setdefault(node, []).append(src)
        before = {n: ray.get(self.sources[n].sources_state.remote())["sent"] for n in per_node}
        ray.get([self.sources[n].start_live.remote(srcs, fps, seconds, frames, policy, 4,
                                                   {s: self._next_seq.get(s, 0) for s in srcs})
                 for n, srcs in per_node.items()])
        last_update = [0.0]
        deadline = time.perf_counter() + seconds + drain_s
        results_before = self._results_total

        def finished() -> bool:
            now = time.perf_counter()
            if on_update and now - last_update[0] > 0.5:
                last_update[0] = now
                on_update(self.report())
            if now > deadline:
                return True
            states = ray.get([self.sources[n].sources_state.remote() for n in per_node])
            if not all(st["done"] for st in states):
                return False
            sent = sum(st["sent"] - before[n] for n, st in zip(per_node, states))
            if self._results_total >= results_before + sent:
                for st in states:
                    self._next_seq.update({int(k): int(v) for k, v in st["next_seq"].items()})
                return True
            return False

        self._collect(set(), seconds + drain_s + 10, until=finished)
        return self.report()

    # ------------------------------------------------------------------ report
    def _brief(self) -> dict:
        import ray

        metrics = ray.get([h.metrics_json.remote() for h in self.stages.values()])
        return {m["node"]: {"in": m["frames_in"], "out": m["frames_out"], "unacked": m.get("unacked", 0)} for m in metrics}

    def report(self) -> dict:
        """Per stage, per link and end-to-end figures, with the plan's predictions beside them."""
        from .report import build_report

        return build_report(self)

