"""Errors raised by the partitioner. Every message says what, where, and how to fix it."""

__all__ = [
    "TierpipeError",
    "TopologyError",
    "CaptureError",
    "PartitionError",
    "PlanError",
    "CodecError",
    "StageError",
    "WireError",
    "ExitError",
]


class TierpipeError(Exception):
    """Base class of every error tierpipe raises on purpose."""


class TopologyError(TierpipeError, ValueError):
    """A topology file is malformed: the message names the file and the field path."""


class CaptureError(TierpipeError):
    """A model could not be turned into a graph: the message names the construct and module path."""


class PartitionError(TierpipeError):
    """No plan satisfies the request: the message names the constraint and by how much it fails."""


class PlanError(TierpipeError):
    """A plan file cannot be read: names the file and the missing or malformed field."""


class CodecError(TierpipeError, ValueError):
    """An unknown codec name: lists the valid ones."""


class StageError(TierpipeError):
    """A stage received or produced tensors that do not match the plan: names the stage and tensor."""


class WireError(TierpipeError):
    """An activation frame is malformed or oversized: names the stage and the field."""


class ExitError(TierpipeError, ValueError):
    """An early exit is declared or used wrongly: names the exit (its point or head) and the fix."""
