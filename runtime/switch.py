"""Switching a running pipeline to a new plan with no pause and nothing lost.

1. In the background (the driver keeps feeding and collecting frames meanwhile): the new
   plan's stage modules are built, put in the object store and the registry (for actors that
   restart later), and every actor loads its tier's stage beside the old one (``prepare``):
   the first of a tier probes whether it batches and the rest are told; an actor that holds
   the same stage under another version (a switch back) reuses it and loads nothing. The
   stream shares the hosts' CPU with this, so each step is as cheap as it can be made (see
   ``bench_adapt.py``'s ``switch_paced``: the switch's own pause).
2. Only when all have it does the driver number new frames with the new version (every source's,
   or, for a plan made for some nodes, only theirs: ``sources``). Frames in
   flight carry the old version and finish on the old stages; the sink's reorder buffer and
   the driver's ledger keep each source exactly once and in order across the switch.
3. If any actor cannot load its stage, the version is dropped and the old plan runs on; the
   switch says which actor and why.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from partition.plan import Plan

from .errors import SwitchError

__all__ = ["PendingSwitch"]


class PendingSwitch:
    """One switch in progress: :meth:`check` from the driver's loop until it returns a result."""

    def __init__(
        self,
        book,
        deployment,
        model,
        plan: Plan,
        emulated_compute_s: Sequence[float] | None,
        timeout_s: float,
        sources: Sequence[int] | None = None,
    ) -> None:
        """``book``: the pipeline's :class:`runtime.driver.PlanBook` (the new version goes live in it);
        ``deployment``: its :class:`runtime.deployment.Deployment` (the actors, the registry)."""
        running = book.plan
        if list(plan.tiers) != list(running.tiers):
            raise SwitchError(
                f"the new plan is for tiers {list(plan.tiers)}, the pipeline runs {list(running.tiers)}; partition for the same topology"
            )
        if plan.topology_digest and running.topology_digest and plan.topology_digest != running.topology_digest:
            raise SwitchError(
                f"the new plan was made for another node structure (topology {plan.topology!r}, "
                f"{plan.topology_digest} vs the running {running.topology_digest}); partition for "
                "the running topology (link figures and speeds may differ, nodes and fan-in may not)"
            )
        if [s.shape for s in plan.inputs] != [s.shape for s in running.inputs]:
            raise SwitchError("the new plan takes other inputs than the running one; make it for the same model")
        self.book, self.deployment, self.model = book, deployment, model
        self.plan, self.timeout_s = plan, timeout_s
        self.sources = None if sources is None else list(sources)  # None: the plan of every unrouted source
        self.version = book.next_version()
        self.keep = book.in_use()  # versions new frames still start on
        self.emulated = list(emulated_compute_s) if emulated_compute_s is not None else list(plan.predicted.stage_compute_s)
        self.started = time.perf_counter()
        self.calls: dict = {}  # prepare ref -> node
        self.loads: dict[str, int] = {}  # how the actors came by the stage: probed, told, reused
        self._later: dict = {}  # a tier's probing node -> (the tier's other nodes, prepare args)
        self._queue: list = []  # loads not sent yet: (node, prepare args, keywords)
        self._hosts: dict = {}  # node -> (its Ray node, how many loads may run there at once)
        self.refs: list = []
        self.error: str | None = None
        self.built_ms = self.shipped_ms = None  # when the stages were built, and when every prepare call was sent
        self._thread = threading.Thread(target=self._launch, name="tierpipe-switch", daemon=True)
        self._thread.start()

    def _same_stage(self, t: int) -> int | None:
        """A version the actors of tier ``t`` hold whose stage is the new plan's (same nodes, inputs,
        outputs, live exits and thresholds): the newest such of version 0, the versions in use and the
        last three (what actors keep)."""
        want = _stage_key(self.plan, t)
        held = {0, *self.keep, *sorted(self.book.plans)[-3:]}
        for version in sorted(held, reverse=True):
            if _stage_key(self.book.plans[version], t) == want:
                return version
        return None

    def _launch(self) -> None:
        """Build and ship; tier by tier: every actor at once where it holds the stage already, else its
        first actor probes whether the stage batches and the rest are told the answer (one probe a tier,
        not one an actor: three forward passes each). Loads that fetch and build go out a few at a time
        per host (:meth:`_dispatch`)."""
        import ray

        try:
            modules = self.plan.build_stages(self.model)
            self.built_ms = (time.perf_counter() - self.started) * 1e3
            self._hosts = _hosts(self.deployment.stages)
            last = len(self.plan.tiers) - 1
            for t, tier in enumerate(self.deployment.topology.path):
                ref = ray.put(modules[t])
                expected = self.deployment.expected(t, self.plan)
                codec = self.plan.codecs[t] if t < last else "raw"
                entry = ray.put(([ref], expected, codec, self.emulated[t]))
                self.refs += [ref, entry]
                self.calls[self.deployment.registry.put.remote(t, self.version, [entry])] = "the plan registry"
                args = (self.version, [ref], expected, codec, self.emulated[t], self.keep)
                same = self._same_stage(t)
                nodes = tier.node_names()
                if same is None:
                    self._queue.insert(0, (nodes[0], args, {}))  # the probes first
                    self._later[nodes[0]] = (nodes[1:], args)
                else:  # nothing to fetch or run: no need to spread these over time
                    for node in nodes:
                        self.calls[self.deployment.stages[node].prepare.remote(*args, same_as=same)] = node
            self.shipped_ms = (time.perf_counter() - self.started) * 1e3
        except Exception as exc:
            self.error = f"cannot build or ship the new plan's stages ({type(exc).__name__}: {str(exc)[:300]})"

    def _dispatch(self) -> None:
        """Send queued loads, at most a host's CPU count in flight on it at once: the actors of a host
        share its CPU with the stream (a 2-core box emulating 21 nodes loaded 16 stages at once and
        stalled the stream for 200 ms); on a real deployment, one node a host, nothing waits. A tier's
        probe, once answered, queues the rest of the tier, told whether the stage batches."""
        import ray

        ready = set(ray.wait(list(self.calls), num_returns=len(self.calls), timeout=0)[0])
        busy: dict = {}
        for ref, node in self.calls.items():
            if ref not in ready and node in self._hosts:
                busy[self._hosts[node][0]] = busy.get(self._hosts[node][0], 0) + 1
        for ref in ready:
            node = self.calls[ref]
            if node in self._later:
                nodes, args = self._later.pop(node)
                try:
                    batchable = ray.get(ref)["batchable"]
                except Exception:  # check() names the actor that failed; the others need not load then
                    continue
                self._queue += [(other, args, {"batchable": batchable}) for other in nodes]
        waiting = []
        for node, args, kw in self._queue:
            host, cap = self._hosts.get(node, (node, 1))
            if busy.get(host, 0) < cap:
                busy[host] = busy.get(host, 0) + 1
                self.calls[self.deployment.stages[node].prepare.remote(*args, **kw)] = node
            else:
                waiting.append((node, args, kw))
        self._queue = waiting

    def check(self) -> dict | None:
        """None while pending; the result once every actor has the new stage (the version is then live).

        Raises:
            SwitchError: an actor could not load its stage, or did not answer in time; the old plan runs on.
        """
        import ray

        if self._thread.is_alive():
            return None
        if self.error is None:
            if self._queue or self._later:
                self._dispatch()
            ready, waiting = ray.wait(list(self.calls), num_returns=len(self.calls), timeout=0)
            if (waiting or self._queue or self._later) and time.perf_counter() - self.started < self.timeout_s:
                return None
            failed = [self.calls[r] for r in waiting] + [
                f"{node} (not asked: the loads before it did not finish)" for node, _, _ in self._queue
            ]
            for r in ready:
                try:
                    reply = ray.get(r)
                    if reply is not None:  # (the registry's put answers None)
                        self.loads[reply["loaded"]] = self.loads.get(reply["loaded"], 0) + 1
                except Exception as exc:
                    failed.append(f"{self.calls[r]} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")
            if failed:
                self.error = f"could not be loaded on {sorted(failed)}"
        if self.error is not None:
            ray.get(self.deployment.registry.drop.remote(self.version))
            raise SwitchError(f"plan version {self.version} {self.error}; the old plan (version {self.book.version}) runs on")
        self.deployment.keep(self.refs)  # kept in scope while frames of this version may exist
        self.book.adopt(self.version, self.plan, self.sources)
        return {
            "version": self.version,
            "prepare_ms": (time.perf_counter() - self.started) * 1e3,
            "build_ms": self.built_ms,
            "shipped_ms": self.shipped_ms,
            "sources": self.sources,
            "loads": self.loads,
        }


def _hosts(stages: dict) -> dict:
    """node -> (the Ray node its actor runs on, that node's CPU count): where loads share a CPU."""
    import ray

    names = list(stages)
    try:
        where = ray.get([stages[n].node_id.remote() for n in names], timeout=10)
    except Exception:  # an actor restarting: no throttle this time (each load then goes out at once)
        return {}
    cpus = {n["NodeID"]: max(int(n.get("Resources", {}).get("CPU", 1)), 1) for n in ray.nodes() if n.get("Alive")}
    return {name: (host, cpus.get(host, 1)) for name, host in zip(names, where)}


def _stage_key(plan: Plan, t: int) -> tuple:
    """What makes tier ``t``'s stage module: its nodes, inputs, outputs, and the exits it evaluates (a
    lower threshold is another module)."""
    spec = plan.stages[t]
    exits = tuple(e for e in plan.exits.live if e.tier == t) if plan.exits else ()
    return spec.nodes, spec.inputs, spec.outputs, exits
