"""``tierpipe demo --view``: the city and the pipeline on a live web page.

What the page gets (see :mod:`runtime.view.server` for the protocol): once, the network drawn
from SUMO's own shapes (every lane and junction of the ``.net.xml``), the controlled lights with
the incoming lane of each of their links, the cameras and the tiers; then, twice a second, the
vehicles (halted ones marked) and each light's state from the running simulation, each camera's
latest frame with its estimate against SUMO's count per lane, the pipeline's figures
(:class:`runtime.view.probe.PipelineProbe`) and the mean delay per controller over simulated time.
"""

from __future__ import annotations

import base64
import time

import numpy as np

from runtime.view.page import first_state, hold
from runtime.view.probe import PipelineProbe
from runtime.view.server import ViewServer

from .scenario import Scenario

__all__ = ["DemoView", "network_static", "cameras_static"]

UPDATE_S = 0.4  # the page's refresh: at least twice a second


def network_static(scenario: Scenario) -> dict:
    """Lanes, junctions and controlled lights from the network file (sumolib: pure Python, no SUMO run)."""
    import sumolib

    net = sumolib.net.readNet(str(scenario.net), withPrograms=True, withInternal=False)
    (xmin, ymin), (xmax, ymax) = net.getBBoxXY()
    lanes = [
        {"id": lane.getID(), "shape": [[round(x, 1), round(y, 1)] for x, y in lane.getShape()], "width": lane.getWidth()}
        for edge in net.getEdges(withInternal=False)
        for lane in edge.getLanes()
    ]
    controlled = {j.id for j in scenario.junctions}
    # a light's nodes: where its controlled incoming lanes end (one light may control several joined nodes)
    nodes_of = {tls.getID(): {c[0].getEdge().getToNode() for c in tls.getConnections()} for tls in net.getTrafficLights()}
    tls_of_node = {node.getID(): tls for tls, nodes in nodes_of.items() for node in nodes}
    junctions = [
        {
            "id": node.getID(),
            "shape": [[round(x, 1), round(y, 1)] for x, y in (node.getShape() or [node.getCoord()])],
            "tls": tls_of_node.get(node.getID()) if tls_of_node.get(node.getID()) in controlled else None,
        }
        for node in net.getNodes()
    ]
    tls = []
    for light in net.getTrafficLights():
        if light.getID() not in controlled:
            continue
        links: dict[int, str] = {}
        for in_lane, _out_lane, index in light.getConnections():
            links.setdefault(index, in_lane.getID())
        xs, ys = zip(*[node.getCoord() for node in nodes_of[light.getID()]])
        tls.append(
            {
                "id": light.getID(),
                "x": float(np.mean(xs)),
                "y": float(np.mean(ys)),
                "links": [links.get(i, "") for i in range(max(links) + 1)],
            }
        )
    return {"bounds": [xmin, ymin, xmax, ymax], "lanes": lanes, "junctions": junctions, "tls": tls}


def cameras_static(scenario: Scenario) -> list[dict]:
    return [
        {"index": i, "name": f"{a.edge} -> {a.junction}", "junction": a.junction, "lanes": len(a.lanes), "node": f"device-{i}"}
        for i, a in enumerate(scenario.cameras)
    ]


def _frame(frame: np.ndarray) -> dict:
    """A camera frame ``[3, H, W]`` uint8 (a lane's view, stop line at the top) as the page's grey image,
    turned a quarter left to fit a tile: the stop line on the left."""
    grey = frame.mean(axis=0) if frame.ndim == 3 else frame
    grey = np.ascontiguousarray(np.rot90(grey)).astype(np.uint8)
    return {"w": int(grey.shape[1]), "h": int(grey.shape[0]), "data": base64.b64encode(grey.tobytes()).decode("ascii")}


class DemoView:
    """The demo's page: start it, feed it phases and ticks, leave it up at the end."""

    def __init__(self, scenario: Scenario, host: str = "127.0.0.1", port: int = 8765) -> None:
        self.scenario = scenario
        self.server = ViewServer(host, port)
        self.probe: PipelineProbe | None = None
        self.state: dict = first_state("capturing and partitioning the model")
        self._static: dict = {}
        self._baseline_curves: dict[str, list] = {}
        self._live_delay: list = []  # (sim t, mean delay so far) of the camera run
        self._last = 0.0

    def start(self) -> str:
        url = self.server.start()
        self._static = {
            "title": f"tierpipe demo: {self.scenario.name}",
            "mode": "demo",
            "network": network_static(self.scenario),
            "cameras": cameras_static(self.scenario),
            "tiers": {"names": [], "nodes": [], "links": []},
        }
        self.server.set_static(self._static)
        self._publish()
        return url

    def phase(self, phase: str, status: str) -> None:
        self.state.update(phase=phase, status=status)
        self._publish()

    def planned(self, plan) -> None:
        from runtime.view.probe import tiers_static

        self._static = {**self._static, "tiers": tiers_static(plan)}  # a new dict: the server thread reads the old one
        self.server.set_static(self._static)

    def baselines(self, traffic: dict[str, list[dict]], seed_index: int) -> None:
        """The SUMO baselines' delay curves for the seed the camera run is on."""
        self._baseline_curves = {m: runs[seed_index].get("delay_curve", []) for m, runs in traffic.items() if len(runs) > seed_index}
        self._live_delay = []
        self._series_delay()
        self._publish()

    def attach(self, pipe) -> None:
        self.probe = PipelineProbe(pipe)

    def tick(self, stats, sim, latest: dict | None, seed: int) -> None:
        """From the camera loop, as often as it likes: sends at most every ``UPDATE_S``."""
        now = time.perf_counter()
        if now - self._last < UPDATE_S:
            return
        self._last = now
        snap = sim.snapshot()
        self._live_delay.append((round(snap["t"], 1), snap["mean_delay_s"]))
        cams = []
        for i in range(len(self.scenario.cameras)):
            k = self.scenario.cameras[i].lanes
            if latest is None:
                cams.append({"index": i, "frame": None, "est": [], "truth": []})
                continue
            cams.append(
                {
                    "index": i,
                    "frame": _frame(latest["frames"][i]),
                    "est": [round(float(x), 2) for x in latest["estimate"][i][: len(k)]],
                    "truth": [float(x) for x in latest["visible"][i][: len(k)]],
                }
            )
        self.state.update(
            phase="camera",
            status=f"camera-driven control, seed {seed}: {stats.frames_delivered} frames delivered",
            sim={"t": snap["t"], "begin": self.scenario.begin_s, "end": self.scenario.end_s, "seed": seed},
            vehicles=snap["vehicles"],
            signals=snap["signals"],
            cameras=cams,
        )
        if self.probe is not None:
            self.state["pipeline"] = self.probe.update()
            self.state["series"] = {**self.probe.series.to_json(), "delay": self.state["series"].get("delay", {})}
        self._series_delay()
        self._publish()

    def finish(self, report: dict, runs) -> None:
        """The final figures: verdict lines, mean delay per controller, the camera run's exact curve."""
        if runs:
            self._live_delay = list(runs[-1].traffic.get("delay_curve", self._live_delay))
        self._series_delay()
        if self.state.get("sim"):
            self.state["sim"] = {**self.state["sim"], "t": self.scenario.end_s}
        traffic = report.get("traffic", {})
        delay = {m: v.get("mean_delay_s") if isinstance(v, dict) else v for m, v in traffic.get("mean_delay_s", {}).items()}
        self.state.update(
            phase="done", status="finished: the page stays up until Ctrl-C", final={"lines": report.get("verdict", []), "delay": delay}
        )
        self._publish()

    def hold(self, console) -> None:
        """Keep the page up with the final figures until Ctrl-C."""
        hold(self.server, console)

    def close(self) -> None:
        self.server.close()

    def _series_delay(self) -> None:
        delay = {}
        for mode, curve in self._baseline_curves.items():
            delay[mode] = [p[1] for p in curve]
            delay.setdefault("t", [p[0] for p in curve])
        if self._live_delay:
            # one time axis: the baselines' grid when there is one, the camera run's samples put on it
            t = delay.get("t") or [p[0] for p in self._live_delay]
            live_t = np.array([p[0] for p in self._live_delay])
            live_v = np.array([p[1] for p in self._live_delay], dtype=float)
            delay["t"] = t
            delay["camera"] = [float(np.interp(x, live_t, live_v)) if x <= live_t[-1] else None for x in t]
        self.state["series"] = {**self.state.get("series", {}), "delay": delay}

    def _publish(self) -> None:
        self.server.publish(dict(self.state))
