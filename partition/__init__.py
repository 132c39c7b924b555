"""partition: capture a model, predict its costs, and cut it over the tiers of a topology.

No Ray here: a :class:`Plan` is the only thing that crosses to ``runtime``. Names are
imported on first use, so a stage actor that needs only ``partition.split`` does not pay
for the optimizers (scipy) or the topology loader (pydantic, pint) when it starts.
"""

from .lazy import lazy_exports

# every name is imported on first use, so ``import partition`` (and ``tierpipe --help``) loads no torch
_WHERE = {
    "capture": "tracer",
    "evaluate": "pricing",
    "CODECS": "codec",
    "CostModel": "cost",
    "Cost": "pricing",
    "Graph": "graph",
    "Node": "graph",
    "TensorSpec": "graph",
    "partition": "optimize",
    "Plan": "plan",
    "AccuracyBudget": "calibration",
    "with_exits": "exits",
    "ExitModel": "exits",
    "ExitBudget": "exit_calib",
    "ExitError": "errors",
    "Stage": "split",
    "StageSpec": "split",
    "build_stages": "split",
    "run_stages": "split",
    "Topology": "topology",
    "get_model": "zoo",
    "CaptureError": "errors",
    "PartitionError": "errors",
    "StageError": "errors",
    "TierpipeError": "errors",
    "TopologyError": "errors",
    "WireError": "errors",
}

__all__ = [
    "capture",
    "partition",
    "evaluate",
    "get_model",
    "Plan",
    "AccuracyBudget",
    "with_exits",
    "ExitModel",
    "ExitBudget",
    "ExitError",
    "build_stages",
    "run_stages",
    "Graph",
    "Node",
    "TensorSpec",
    "Topology",
    "CostModel",
    "Cost",
    "Stage",
    "StageSpec",
    "CODECS",
    "TierpipeError",
    "TopologyError",
    "CaptureError",
    "PartitionError",
    "StageError",
    "WireError",
]


__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
