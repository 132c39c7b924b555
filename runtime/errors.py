"""Errors raised by the runtime (the shared base lives in ``partition.errors``)."""

from partition.errors import StageError, TierpipeError, WireError

__all__ = ["TierpipeError", "StageError", "WireError", "PipelineError", "ClusterError"]


class PipelineError(TierpipeError):
    """A pipeline could not start or finish: names the stage, node or input and the fix."""


class ClusterError(TierpipeError):
    """A cluster could not be launched, reached or stopped: names the host and the command."""
