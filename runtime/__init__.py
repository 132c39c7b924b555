"""tierpipe.runtime: run a Plan's stages as a streaming pipeline of Ray actors.

``Pipeline`` and ``Result`` are imported on first use, so a stage actor that needs only
``runtime.actors`` does not import the driver side."""

__all__ = ["Pipeline", "Result"]


def __getattr__(name: str):
    if name == "Pipeline":
        from .pipeline import Pipeline
        return Pipeline
    if name == "Result":
        from .delivery import Result
        return Result
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
