"""The parts of one stage node, each with one job (:class:`runtime.actors.StageWorker` wires them):

- :class:`Inbox` (``inbox.py``): pushed frames decoded and checked, repeats dropped, the rest queued.
- :class:`Executor` (``executor.py``): queued frames batched, run on their plan version's stage.
- a compute clock (``compute.py``): :class:`RealCompute` books real time; :class:`EmulatedCompute` the tier's.
- an outbox (``outbox.py``): :class:`RelayOutbox` sends up an uplink; :class:`SinkOutbox` keeps results in
  order for the driver.
- a link model for the uplink (``links.py``): :class:`RealLink` or :class:`ShapedLink` (emulated).
- the acknowledgement rules (``acks.py``): :class:`Marks`, :class:`NodeAcks`.

Emulation is injected (a compute clock, a link model), never a branch in the per-frame path; so is the
difference between a relay and the sink (the outbox). Names are imported on first use.
"""

from partition.lazy import lazy_exports

_WHERE = {
    "Inbox": "inbox",
    "Executor": "executor",
    "RealCompute": "compute",
    "EmulatedCompute": "compute",
    "compute_clock": "compute",
    "RelayOutbox": "outbox",
    "SinkOutbox": "outbox",
    "RealLink": "links",
    "ShapedLink": "links",
    "link_model": "links",
    "Marks": "acks",
    "NodeAcks": "acks",
}

__all__ = list(_WHERE)

__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
