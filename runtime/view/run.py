"""``tierpipe run --view``: the live page of a pipeline without a city (tiers, plan, figures over time)."""

from __future__ import annotations

import time

from .probe import PipelineProbe, tiers_static
from .server import ViewServer, is_loopback

__all__ = ["RunView"]


class RunView:
    """Start with the plan, :meth:`attach` the running pipeline, :meth:`update` as often as you like."""

    def __init__(self, plan, title: str, host: str = "127.0.0.1", port: int = 8765) -> None:
        self.server = ViewServer(host, port)
        self.host = host
        self.static = {"title": title, "mode": "run", "network": None, "cameras": [], "tiers": tiers_static(plan)}
        self.probe: PipelineProbe | None = None
        self.state = {"phase": "starting", "status": "starting the stage actors", "sim": None, "vehicles": [], "signals": {}}
        self.state.update({"cameras": [], "pipeline": None, "series": {"delay": {}}, "final": None})

    def start(self, console) -> str:
        url = self.server.start()
        self.server.set_static(self.static)
        self.server.publish(dict(self.state))
        console.print(f"live view at {url}")
        if not is_loopback(self.host):
            console.print(
                f"[yellow]warning:[/yellow] the view listens on {self.host}: anyone who can reach it sees the pipeline (no login)"
            )
        return url

    def attach(self, pipe) -> None:
        self.probe = PipelineProbe(pipe, every_s=0.5)

    def update(self, status: str, force: bool = False) -> None:
        if self.probe is None:
            return
        figures = self.probe.update(force)
        self.state.update(phase="running", status=status, pipeline=figures, series={**self.probe.series.to_json(), "delay": {}})
        self.server.publish(dict(self.state))

    def finish(self, lines: list[str]) -> None:
        self.state.update(phase="done", status="finished: the page stays up until Ctrl-C", final={"lines": lines, "delay": {}})
        self.server.publish(dict(self.state))

    def hold(self, console) -> None:
        console.print(f"the live view stays up at {self.server.url} with the final figures; Ctrl-C to stop")
        try:
            while True:
                time.sleep(0.5)
        except KeyboardInterrupt:
            console.print("view stopped")
        finally:
            self.server.close()

    def close(self) -> None:
        self.server.close()
