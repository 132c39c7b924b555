"""What the nodes of one packed process share (:mod:`runtime.packing`): the calls to other processes
and the stage runs.

- :class:`Courier`: pushes from this process's nodes to the nodes of another process, one Ray call per
  destination at most every 5 ms.
- :class:`StagePool`: frames of this process's nodes that run the same stage module in one turn of the
  event loop, run as one batch.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from partition.split import INLINE_BELOW_S

from .versions import run_locked, run_timed

if TYPE_CHECKING:
    from .packing import NodeHandle

__all__ = ["CoalescedHandle", "Courier", "StagePool"]


class Courier:
    """Pushes from the nodes of this process to the nodes of another, coalesced: one Ray call per
    destination process at most every ``linger_s`` (the first after a quiet spell goes at once).

    A Ray call costs its two ends about a millisecond of CPU whatever it carries; 16 cameras sending a
    frame each to their gateways in one call instead of 16 is most of what packing saves per frame.
    """

    def __init__(self, linger_s: float = 0.005) -> None:
        self.linger_s = linger_s
        self.pending: dict = {}  # destination host -> [(node, args, future)]
        self.last: dict = {}  # destination host -> loop time of its last call
        self.tasks: set[asyncio.Task] = set()
        self.calls = 0

    def push(self, handle: NodeHandle, *args) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        batch = self.pending.get(handle.host)
        if batch is None:
            batch = self.pending[handle.host] = []
            wait = self.last.get(handle.host, float("-inf")) + self.linger_s - loop.time()
            if wait > 0:
                loop.call_later(wait, self._flush, handle.host)
            else:
                loop.call_soon(self._flush, handle.host)
        batch.append((handle.node, args, future))
        return future

    def flush(self) -> None:
        """Send every push waiting out ``linger_s`` now."""
        for host in list(self.pending):
            self._flush(host)

    def _flush(self, host) -> None:
        batch = self.pending.pop(host, None)
        if batch is None:  # already sent by flush()
            return
        self.last[host] = asyncio.get_running_loop().time()
        self.calls += 1
        try:
            ref = host.push_many.remote([(node, args) for node, args, _ in batch])
        except Exception as exc:  # not even sent (e.g. arguments Ray cannot serialise): every push fails with it
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        task = asyncio.ensure_future(self._settle(ref, batch))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    @staticmethod
    async def _settle(ref, batch: list) -> None:
        try:
            replies = await ref
        except Exception as exc:  # the destination process died: every push in the call failed with it
            replies = [exc] * len(batch)
        for (_, _, future), reply in zip(batch, replies):
            if future.done():
                continue
            if isinstance(reply, BaseException):
                future.set_exception(reply)
            else:
                future.set_result(reply)


class StagePool:
    """The frames of this process's nodes that run the same stage module, run as one batch.

    A node of a packed process hands its frames here instead of running them itself; the frames that
    come in one turn of the event loop run together (batched where the stage allows, as a node's own
    fan-in batches are), and each node gets its own outputs back. Each node still books its tier's
    emulated time for its own frames: only the host's real work is shared. 1,000 cameras in one process
    cost a forward pass per turn, not one per frame.
    """

    def __init__(self) -> None:
        self.pending: dict[int, list] = {}  # id(stage module) -> [(runner, values, future)]
        self.threaded: dict[int, bool] = {}  # id(stage module) -> its last batch was long: run it off the loop
        self.tasks: set[asyncio.Task] = set()

    def run(self, runner, values: list[dict]) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        key = id(runner.stage.module)  # the nodes that run one stage module (on one device) batch together
        batch = self.pending.get(key)
        if batch is None:
            batch = self.pending[key] = []
            loop.call_soon(self._flush, key)
        batch.append((runner, values, future))
        return future

    def _flush(self, key: int) -> None:
        task = asyncio.ensure_future(self._run(key, self.pending.pop(key)))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, key: int, batch: list) -> None:
        runner = batch[0][0]
        values = [v for _, vs, _ in batch for v in vs]
        try:
            if self.threaded.get(key):
                outputs, took = await asyncio.to_thread(run_timed, runner, values)
            else:
                outputs, took = run_timed(runner, values)
        except Exception as exc:
            if len(batch) == 1:  # the node retries its own frames one by one (a bad frame fails alone)
                if not batch[0][2].done():
                    batch[0][2].set_exception(exc)
                return
            for runner, vs, future in batch:  # another node's frame may be the bad one: each node's frames alone
                if future.done():  # its node was killed meanwhile
                    continue
                try:
                    future.set_result(run_locked(runner, vs))
                except Exception as own:
                    future.set_exception(own)
            return
        self.threaded[key] = took >= INLINE_BELOW_S * len(values)  # per frame, on the run's own time, as a node decides
        at = 0
        for _, vs, future in batch:
            if not future.done():
                future.set_result(outputs[at : at + len(vs)])
            at += len(vs)


class _CoalescedPush:
    __slots__ = ("courier", "handle")

    def __init__(self, courier: Courier, handle: NodeHandle) -> None:
        self.courier, self.handle = courier, handle

    def remote(self, *args):
        return self.courier.push(self.handle, *args)


class CoalescedHandle:
    """A parent node as its children in this process see it: ``push`` goes through the :class:`Courier`,
    anything else straight to the node."""

    def __init__(self, courier: Courier, handle: NodeHandle) -> None:
        self.push = _CoalescedPush(courier, handle)
        self.handle = handle

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.handle, name)
