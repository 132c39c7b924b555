"""``tierpipe run --view``: the live page of a pipeline without a city (tiers, plan, figures over time)."""

from __future__ import annotations

from .page import announce, first_state, hold
from .probe import PipelineProbe, tiers_static
from .server import ViewServer

__all__ = ["RunView"]


class RunView:
    """Start with the plan, :meth:`attach` the running pipeline, :meth:`update` as often as the page should change."""

    def __init__(self, plan, title: str, host: str = "127.0.0.1", port: int = 8765) -> None:
        self.server = ViewServer(host, port)
        self.static = {"title": title, "mode": "run", "network": None, "cameras": [], "tiers": tiers_static(plan)}
        self.probe: PipelineProbe | None = None
        self.state = first_state("starting the stage actors")

    def start(self, console) -> str:
        url = self.server.start()
        self.server.set_static(self.static)
        self.server.publish(dict(self.state))
        announce(self.server, console, "the pipeline")
        return url

    def attach(self, pipe) -> None:
        self.probe = PipelineProbe(pipe)

    def update(self, status: str) -> None:
        if self.probe is None:
            return
        figures = self.probe.update()
        self.state.update(phase="running", status=status, pipeline=figures, series={**self.probe.series.to_json(), "delay": {}})
        self.server.publish(dict(self.state))

    def finish(self, lines: list[str]) -> None:
        self.state.update(phase="done", status="finished: the page stays up until Ctrl-C", final={"lines": lines, "delay": {}})
        self.server.publish(dict(self.state))

    def hold(self, console) -> None:
        hold(self.server, console)

    def close(self) -> None:
        self.server.close()
