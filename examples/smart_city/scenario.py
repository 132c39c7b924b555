"""A traffic scenario read from SUMO's own files: signalised junctions, their approaches, lanes and phases.

Nothing here is specific to one network. From a ``.sumocfg`` (or a ``.net.xml`` and route files)
:meth:`Scenario.load` reads with sumolib:

- the traffic lights to control (every one, or those named), each with its program's green
  phases, yellow and all-red times, and its controlled links (incoming lane -> outgoing lane);
- one **approach** per distinct incoming edge of a light's controlled connections (as
  ``TLS.getConnections()`` lists them): its controlled lanes (index, width, length) and the
  angle of travel at the stop line. Each approach gets one camera.

:meth:`Scenario.topology` generates the tierpipe topology for it: one camera (device) per
approach, one gateway per junction with an explicit ``fan_in``, one edge server.

>>> sc = Scenario.load(SCENARIOS / "grid2x2" / "grid2x2.sumocfg")       # doctest: +SKIP
>>> len(sc.junctions), len(sc.cameras)                                   # doctest: +SKIP
(4, 16)
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

# DEFAULT_SCENARIO lives in the package, so the CLI reads it without numpy
from . import DEFAULT_SCENARIO, HERE
from .camera import MAX_LANES
from .controller import SignalProgram, is_green
from .sumocfg import ScenarioError, read_config, routes_end_s

__all__ = [
    "Scenario",
    "Junction",
    "Approach",
    "Lane",
    "Phase",
    "ScenarioError",
    "SCENARIOS",
    "DEFAULT_SCENARIO",
    "MAX_LANES",
    "shipped_scenarios",
]

SCENARIOS = HERE / "scenarios"


@dataclass(frozen=True)
class Lane:
    id: str
    index: int  # SUMO's lane index on its edge (0 = rightmost)
    width_m: float
    length_m: float


@dataclass(frozen=True)
class Approach:
    """One incoming edge of a controlled junction: what one camera sees."""

    junction: str
    edge: str
    lanes: tuple[Lane, ...]  # the controlled lanes, rightmost first (at most MAX_LANES)
    angle_deg: float  # direction of travel at the stop line (0 = north, clockwise)
    length_m: float


@dataclass(frozen=True)
class Phase:
    """One phase of the program SUMO runs for a light (for the actuated copy of it)."""

    duration_s: float
    state: str
    min_s: float | None = None
    max_s: float | None = None


@dataclass(frozen=True)
class Junction:
    id: str  # the traffic light's id
    approaches: tuple[Approach, ...]
    program: SignalProgram
    phases: tuple[Phase, ...] = ()


@dataclass(frozen=True)
class Scenario:
    name: str
    net: Path
    routes: tuple[Path, ...]
    additional: tuple[Path, ...]
    config: Path | None
    begin_s: float
    end_s: float
    junctions: tuple[Junction, ...]
    notes: tuple[str, ...] = ()

    @property
    def cameras(self) -> tuple[Approach, ...]:
        """Every approach in camera order: junction by junction."""
        return tuple(a for j in self.junctions for a in j.approaches)

    @property
    def lanes_per_camera(self) -> list[int]:
        return [len(a.lanes) for a in self.cameras]

    def summary(self) -> dict:
        return {
            "name": self.name,
            "net": str(self.net),
            "junctions": [j.id for j in self.junctions],
            "cameras": len(self.cameras),
            "camera_edges": [a.edge for a in self.cameras],
            "lanes_per_camera": self.lanes_per_camera,
            "green_phases": {j.id: len(j.program.greens) for j in self.junctions},
            "begin_s": self.begin_s,
            "end_s": self.end_s,
            "notes": list(self.notes),
        }

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        config: str | Path | None = None,
        *,
        net: str | Path | None = None,
        routes: list[str | Path] | None = None,
        tls: list[str] | None = None,
        begin_s: float | None = None,
        end_s: float | None = None,
    ) -> Scenario:
        """Read a scenario from a ``.sumocfg`` (or a shipped scenario's name), or from ``net`` and ``routes``.

        Raises:
            ScenarioError: a missing file, a config without a net, a light that does not exist,
                a network without traffic lights; the message names the file and the fix.
        """
        additional: list[Path] = []
        file_begin, file_end = 0.0, 3600.0
        if config is not None and (net is not None or routes):
            raise ScenarioError(f"{config}: give a scenario (.sumocfg) or a network and routes (--net, --routes), not both")
        if config is not None:
            path = _resolve_config(config)
            net_p, route_ps, additional, file_begin, file_end = read_config(path)
            name = path.name.removesuffix(".sumocfg")
        else:
            if net is None or not routes:
                raise ScenarioError(
                    "a scenario needs a .sumocfg (--scenario FILE) or a network and routes (--net FILE.net.xml --routes FILE.rou.xml)"
                )
            path = None
            net_p, route_ps = Path(net), [Path(r) for r in routes]
            name = net_p.name.removesuffix(".net.xml").removesuffix(".xml")
            file_end = routes_end_s(route_ps) or file_end
        for p, what in [(net_p, "network")] + [(r, "routes") for r in route_ps]:
            if not p.exists():
                raise ScenarioError(f"{p}: no such {what} file" + (f" (named in {path})" if path else ""))
        begin = file_begin if begin_s is None else float(begin_s)
        end = file_end if end_s is None else float(end_s)
        if end <= begin:
            raise ScenarioError(f"{path or net_p}: the window {begin:g}-{end:g} s is empty; --end must be after --begin")
        junctions, notes = _junctions(net_p, list(dict.fromkeys(tls)) if tls else None, additional)
        return cls(name, net_p, tuple(route_ps), tuple(additional), path, begin, end, tuple(junctions), tuple(notes))

    # ------------------------------------------------------------------ topology
    def topology(self, base: str = "smart_city", fps: float = 1.0) -> dict:
        """A topology (as a dict for ``Topology.from_dict``) for this scenario, from ``base``'s tiers and links.

        One device per camera (``device-<i>`` in camera order), one gateway per junction fed by its
        own cameras (explicit ``fan_in``), the base's last tier for the rest.
        """
        from partition import Topology

        ref = Topology.load(base)
        cams = self.cameras
        tiers = []
        for i, t in enumerate(ref.tiers):
            spec = t.model_dump(by_alias=True, exclude_none=True)
            spec["nodes"] = len(cams) if i == 0 else len(self.junctions) if i == 1 else t.nodes
            tiers.append(_with_units(spec))
        fan_in, k = {}, 0
        for g, j in enumerate(self.junctions):
            fan_in[f"{tiers[1]['name']}-{g}"] = [f"{tiers[0]['name']}-{k + i}" for i in range(len(j.approaches))]
            k += len(j.approaches)
        return {
            "name": f"{ref.name}-{self.name}",
            "description": f"{len(cams)} cameras on the approaches of {len(self.junctions)} signalised junctions "
            f"of {self.name} -> one gateway per junction -> {ref.tiers[-1].name}",
            "tiers": tiers,
            "links": [_with_units(link.model_dump(by_alias=True, exclude_none=True)) for link in ref.links],
            "fan_in": fan_in,
            "sources": [{"name": "traffic-camera", "count": len(cams), "fps": fps, "policy": "block"}],
            "sink": ref.sink or ref.tiers[-1].name,
        }


def shipped_scenarios() -> list[str]:
    return sorted(p.parent.name for p in SCENARIOS.glob("*/*.sumocfg"))


def _with_units(spec: dict) -> dict:
    """A tier or link spec dumped in the loader's own units, written out with them (``20 Mbit/s``)."""
    units = {"bandwidth": "Mbit/s", "latency": "ms", "jitter": "ms", "memory": "MB", "power": "W", "tx_energy": "nJ/B"}
    out = {}
    for k, v in spec.items():
        if k in units and isinstance(v, (int, float)):
            out[k] = f"{v:g} {units[k]}"
        else:
            out[k] = v
    return out


def _resolve_config(config: str | Path) -> Path:
    path = Path(config)
    if path.exists():
        return path
    shipped = SCENARIOS / str(config) / f"{config}.sumocfg"
    if shipped.exists():
        return shipped
    raise ScenarioError(f"{config}: no such .sumocfg and no shipped scenario of that name; shipped: {', '.join(shipped_scenarios())}")


def _natural(name: str) -> list:
    """``2`` before ``10``: lights and edges in the order a person reads them."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def _active(programs: dict):
    """The program SUMO starts with: of several loaded for one light, the last one."""
    return list(programs.values())[-1]


def _angle(shape: list[tuple[float, float]]) -> float:
    (x0, y0), (x1, y1) = shape[-2], shape[-1]
    return math.degrees(math.atan2(x1 - x0, y1 - y0)) % 360.0


def _extra_programs(additional: list[Path]) -> dict[str, list[Phase]]:
    """Signal programs defined in additional files (SUMO runs the last one loaded for a light)."""
    out: dict[str, list[Phase]] = {}
    for path in additional:
        if not path.exists():
            raise ScenarioError(f"{path}: no such additional file (named in the scenario's <additional-files>)")
        for _, el in ET.iterparse(path):
            if el.tag == "tlLogic":
                out[el.get("id")] = [
                    Phase(
                        float(p.get("duration")),
                        p.get("state"),
                        float(p.get("minDur")) if p.get("minDur") else None,
                        float(p.get("maxDur")) if p.get("maxDur") else None,
                    )
                    for p in el.findall("phase")
                ]
    return out


def _junctions(net_path: Path, wanted: list[str] | None, additional: list[Path] = ()) -> tuple[list[Junction], list[str]]:
    import sumolib

    try:
        net = sumolib.net.readNet(str(net_path), withPrograms=True, withPedestrianConnections=False)
    except Exception as exc:  # sumolib raises whatever its SAX parser raises
        raise ScenarioError(
            f"{net_path}: sumolib cannot read this network ({type(exc).__name__}: {exc}); "
            "give a SUMO .net.xml (netconvert writes one from OpenStreetMap)"
        ) from None
    lights = {t.getID(): t for t in net.getTrafficLights()}
    if not lights:
        raise ScenarioError(f"{net_path}: the network has no traffic lights; build them with netconvert (--tls.guess, or --tls.set ID,...)")
    if wanted:
        unknown = [t for t in wanted if t not in lights]
        if unknown:
            raise ScenarioError(
                f"{net_path}: no traffic light {', '.join(map(repr, unknown))}; the network has {', '.join(sorted(lights))}"
            )
    ids = list(wanted) if wanted else sorted(lights, key=_natural)
    extra = _extra_programs(list(additional))
    junctions, notes = [], []
    for tid in ids:
        tls = lights[tid]
        conns = sorted(tls.getConnections(), key=lambda c: c[2])
        programs = tls.getPrograms()
        if tid in extra:
            phases = extra[tid]
        elif programs:
            phases = [Phase(float(p.duration), p.state, _num(p.minDur), _num(p.maxDur)) for p in _active(programs).getPhases()]
        else:
            raise ScenarioError(f"{net_path}: traffic light {tid} has no program; rebuild the network with netconvert")
        n_links = max([1 + max((c[2] for c in conns), default=-1)] + [len(ph.state) for ph in phases[:1]])
        links: list[tuple[str, str]] = [("", "")] * n_links
        edges: dict[str, set] = {}
        for in_lane, out_lane, idx in conns:
            links[idx] = (in_lane.getID(), out_lane.getID())
            edges.setdefault(in_lane.getEdge().getID(), set()).add(in_lane)
        program = _program(phases, tid, tuple(links), net_path)
        approaches = []
        for edge_id in sorted(edges, key=_natural):  # sorted: the same camera order on every run
            lanes = sorted(edges[edge_id], key=lambda lane: lane.getIndex())
            if len(lanes) > MAX_LANES:
                notes.append(f"{edge_id}: {len(lanes)} controlled lanes; its camera sees the {MAX_LANES} rightmost")
                lanes = lanes[:MAX_LANES]
            edge = lanes[0].getEdge()
            approaches.append(
                Approach(
                    tid,
                    edge_id,
                    tuple(Lane(ln.getID(), ln.getIndex(), ln.getWidth(), ln.getLength()) for ln in lanes),
                    _angle(lanes[0].getShape()),
                    edge.getLength(),
                )
            )
        junctions.append(Junction(tid, tuple(approaches), program, tuple(phases)))
    return junctions, notes


def _num(value) -> float | None:
    try:
        return float(value) if value is not None and float(value) >= 0 else None
    except (TypeError, ValueError):
        return None


def _program(phases: list[Phase], tid: str, links: tuple[tuple[str, str], ...], net_path: Path) -> SignalProgram:
    """The green phases, yellow and all-red of the program SUMO runs for the light."""
    if not phases or not links:
        raise ScenarioError(f"{net_path}: traffic light {tid} has no program or no controlled link; rebuild the network with netconvert")
    greens, yellow_s, all_red_s = [], None, None
    for i, ph in enumerate(phases):
        state = ph.state
        if "y" in state or "Y" in state:
            yellow_s = yellow_s if yellow_s is not None else float(ph.duration_s)
            nxt = phases[(i + 1) % len(phases)].state
            if all_red_s is None and not any(is_green(c) or c in "yY" for c in nxt):
                all_red_s = float(phases[(i + 1) % len(phases)].duration_s)
        elif any(is_green(c) for c in state) and state not in greens:
            greens.append(state)
    if not greens:
        raise ScenarioError(f"{net_path}: traffic light {tid}'s program has no green phase")
    try:
        return SignalProgram(tid, tuple(greens), links, yellow_s if yellow_s is not None else 3.0, all_red_s or 0.0)
    except ValueError as exc:
        raise ScenarioError(f"{net_path}: {exc}") from None
