"""tierpipe.runtime: run a Plan's stages as a streaming pipeline of Ray actors."""

from .delivery import Result
from .pipeline import Pipeline

__all__ = ["Pipeline", "Result"]
