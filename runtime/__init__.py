"""runtime: run a Plan's stages as a streaming pipeline of Ray actors.

What a user runs with: :class:`Pipeline` (``submit``/``poll``/``run``/``stream``/``switch``),
:class:`Result` (one delivered frame), the runtime's errors, the live adapter (:class:`Adapter`,
``Pipeline(..., adapt=True)``) and a switch in progress (:class:`PendingSwitch`). Everything else
in the package is private. Names are imported on first use, so a stage actor that needs only
``runtime.actors`` does not import the driver side, and ``tierpipe --help`` imports no Ray.

>>> import runtime
>>> sorted(runtime.__all__)[:3]
['Adapter', 'ClusterError', 'PendingSwitch']
"""

from partition.lazy import lazy_exports

_WHERE = {
    "Pipeline": "pipeline",
    "Result": "delivery",
    "Adapter": "adapt",
    "PendingSwitch": "switch",
    "TierpipeError": "errors",
    "PipelineError": "errors",
    "ClusterError": "errors",
    "SwitchError": "errors",
    "StageError": "errors",
    "WireError": "errors",
    "UnknownPlanError": "errors",
}

__all__ = list(_WHERE)


__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
