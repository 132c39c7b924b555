"""Errors raised by the runtime (the shared base lives in ``partition.errors``)."""

from partition.errors import StageError, TierpipeError, WireError

__all__ = [
    "TierpipeError",
    "StageError",
    "WireError",
    "UnknownPlanError",
    "PipelineError",
    "ClusterError",
    "SwitchError",
    "LabError",
    "NodeGoneError",
    "unavailable",
]


class PipelineError(TierpipeError):
    """A pipeline could not start or finish: names the stage, node or input and the fix."""


class ClusterError(TierpipeError):
    """A cluster could not be launched, reached or stopped: names the host and the command."""


class LabError(TierpipeError):
    """A lab (``tierpipe lab up|status|down``) could not be built, read or removed: names the command,
    its own error, and the fix."""


class UnknownPlanError(WireError):
    """A frame of a plan version this stage does not hold (yet): fetch the version, then accept it."""

    def __init__(self, message: str, version: int) -> None:
        super().__init__(message)
        self.version = version


class SwitchError(TierpipeError):
    """A plan switch could not be prepared on every stage: the old plan keeps running."""


class NodeGoneError(TierpipeError):
    """A call to an emulated node that was killed while it ran (``Pipeline.kill``): the node is back
    as a new incarnation, and its senders replay to it as after a process kill."""


def unavailable() -> tuple[type[BaseException], ...]:
    """The errors that mean "this stage's actor or node is gone (for now)": its senders wait and replay."""
    from ray.exceptions import ActorUnavailableError, RayActorError

    return (ActorUnavailableError, RayActorError, NodeGoneError)
