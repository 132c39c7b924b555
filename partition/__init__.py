"""tierpipe.partition: capture a model, predict its costs, and cut it over the tiers of a topology.

No Ray here: a :class:`Plan` is the only thing that crosses to ``runtime``.
"""

from .capture import capture
from .codec import CODECS
from .cost import CostModel
from .errors import CaptureError, PartitionError, StageError, TierpipeError, TopologyError, WireError
from .evaluate import Cost, evaluate
from .graph import Graph, Node, TensorSpec
from .optimize import partition
from .plan import Plan
from .calibration import AccuracyBudget
from .split import Stage, StageSpec, build_stages, run_stages
from .topology import Topology

__all__ = [
    "capture", "partition", "evaluate", "Plan", "AccuracyBudget", "build_stages", "run_stages",
    "Graph", "Node", "TensorSpec", "Topology", "CostModel", "Cost", "Stage", "StageSpec", "CODECS",
    "TierpipeError", "TopologyError", "CaptureError", "PartitionError", "StageError", "WireError",
]
