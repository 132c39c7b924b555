"""tierpipe.runtime: run a Plan's stages as a streaming pipeline of Ray actors."""

__all__: list[str] = []
