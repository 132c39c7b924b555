"""Scenario extraction on networks of 1-5 lanes and 3-6 green phases, checked against SUMO's own view of them,
and the topology generated from a scenario."""

import re
from pathlib import Path

import pytest
import yaml

from examples.smart_city.scenario import Scenario, ScenarioError, shipped_scenarios
from examples.smart_city.simproc import run_in_process

DATA = Path(__file__).resolve().parent.parent / "data"
NETS = DATA / "nets"
SUMO_RL = DATA / "sumo_rl"
EXTERNAL = [SUMO_RL / "2way-single-intersection" / "2way-single-intersection.sumocfg", SUMO_RL / "4x4-Lucas" / "4x4-Lucas.sumocfg"]


def sumo_view(net: str) -> dict:
    """What the running SUMO engine (libsumo, not sumolib) says of every traffic light: per incoming edge its
    controlled lanes, and the distinct green states of the program it runs."""
    import libsumo

    libsumo.start(["sumo", "-n", net, "--no-step-log", "true", "--no-warnings", "true", "--end", "1"])
    out = {}
    for tls in libsumo.trafficlight.getIDList():
        edges: dict[str, set] = {}
        for link in libsumo.trafficlight.getControlledLinks(tls):
            for in_lane, _, _ in link:
                edges.setdefault(libsumo.lane.getEdgeID(in_lane), set()).add(in_lane)
        running = libsumo.trafficlight.getProgram(tls)
        logic = next(lg for lg in libsumo.trafficlight.getAllProgramLogics(tls) if lg.programID == running)
        greens = {p.state for p in logic.phases if any(c in "Gg" for c in p.state) and "y" not in p.state.lower()}
        out[tls] = {"lanes": {e: len(v) for e, v in edges.items()}, "greens": len(greens)}
    libsumo.close()
    return out


@pytest.mark.parametrize(
    "name, approaches, lanes, greens", [("t3_l1", 3, 1, 3), ("t4_l5", 4, 5, 4), ("t5_l2", 5, 2, 5), ("t6_l3", 6, 3, 6)]
)
def test_approaches_lanes_and_phases_match_sumo_on_1_to_5_lanes_and_3_to_6_phases(name, approaches, lanes, greens, tmp_path):
    net = str(NETS / f"{name}.net.xml")
    (tmp_path / "empty.rou.xml").write_text("<routes/>\n")
    sc = Scenario.load(net=net, routes=[tmp_path / "empty.rou.xml"])
    view = run_in_process(sumo_view, net).get()
    assert [j.id for j in sc.junctions] == ["A1"] == list(view)
    j = sc.junctions[0]
    # the hand-made expectation: the spider's arms, netgenerate's lane count, netconvert's layout
    assert len(j.approaches) == approaches and all(len(a.lanes) == lanes for a in j.approaches)
    assert len(j.program.greens) == greens
    # and SUMO's own view of the same light
    assert {a.edge: len(a.lanes) for a in j.approaches} == view["A1"]["lanes"]
    assert len(j.program.greens) == view["A1"]["greens"]
    assert all([ln.index for ln in a.lanes] == sorted(ln.index for ln in a.lanes) for a in j.approaches)
    assert all(40 < a.length_m < 130 and 2.5 < a.lanes[0].width_m < 4.0 for a in j.approaches)
    assert len({round(a.angle_deg) for a in j.approaches}) == approaches  # each arm comes from its own direction


@pytest.mark.parametrize("cfg", EXTERNAL + [f"shipped:{n}" for n in ("grid2x2", "midtown")], ids=lambda c: Path(str(c)).stem)
def test_networks_not_made_here_and_the_shipped_ones_read_as_sumo_sees_them(cfg):
    sc = Scenario.load(str(cfg).removeprefix("shipped:"))
    view = run_in_process(sumo_view, str(sc.net)).get()
    assert [j.id for j in sc.junctions] == sorted(view, key=lambda t: (len(t), t))
    for j in sc.junctions:
        assert {a.edge: len(a.lanes) for a in j.approaches} == view[j.id]["lanes"], j.id
        assert len(j.program.greens) == view[j.id]["greens"], j.id
    assert sc.end_s > sc.begin_s and sc.routes and all(r.exists() for r in sc.routes)


def test_midtown_has_four_junctions_with_differing_lane_counts():
    sc = Scenario.load("midtown")
    assert len(sc.junctions) >= 4 and len(set(sc.lanes_per_camera)) >= 3
    assert len({len(j.program.greens) for j in sc.junctions}) >= 2  # not every junction runs the same program
    assert set(shipped_scenarios()) >= {"grid2x2", "midtown"}


def test_the_topology_has_a_camera_per_approach_and_a_gateway_per_junction_by_explicit_fan_in(tmp_path):
    from partition import Topology

    sc = Scenario.load(EXTERNAL[1], tls=["0", "5", "10"])  # 3 lights of the 4x4 grid, 2 approaches each
    data = sc.topology(fps=2.0)
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    topo = Topology.load(path)
    assert [t.nodes for t in topo.path] == [6, 3, 1]
    assert topo.children["gateway-1"] == ["device-2", "device-3"]  # light "5"'s two cameras
    assert topo.parents["device-5"] == "gateway-2" and topo.sources[0].fps == 2.0
    assert [a.junction for a in sc.cameras] == ["0", "0", "5", "5", "10", "10"]


def test_bad_scenarios_say_which_file_and_what_to_do(tmp_path):
    with pytest.raises(ScenarioError, match=r"no traffic light '99'.*the network has 0, 1, 10"):
        Scenario.load(EXTERNAL[1], tls=["99"])
    with pytest.raises(ScenarioError, match="no such .sumocfg and no shipped scenario.*grid2x2"):
        Scenario.load(tmp_path / "missing.sumocfg")
    cfg = tmp_path / "x.sumocfg"
    cfg.write_text('<configuration><input><route-files value="r.rou.xml"/></input></configuration>')
    with pytest.raises(ScenarioError, match=r"x.sumocfg: no <net-file"):
        Scenario.load(cfg)
    cfg.write_text('<configuration><input><net-file value="n.net.xml"/><route-files value="r.rou.xml"/></input></configuration>')
    with pytest.raises(ScenarioError, match=r"n.net.xml: no such network file \(named in .*x.sumocfg\)"):
        Scenario.load(cfg)
    plain = tmp_path / "plain.net.xml"
    text = re.sub(r"<tlLogic.*?</tlLogic>", "", (NETS / "t3_l1.net.xml").read_text(), flags=re.S)
    plain.write_text(re.sub(r' (tl|linkIndex)="[^"]*"', "", text).replace('type="traffic_light"', 'type="priority"'))
    (tmp_path / "r.rou.xml").write_text("<routes/>")
    with pytest.raises(ScenarioError, match="plain.net.xml: the network has no traffic lights; build them with netconvert"):
        Scenario.load(net=plain, routes=[tmp_path / "r.rou.xml"])
    with pytest.raises(ScenarioError, match="window 100-50 s is empty"):
        Scenario.load("grid2x2", begin_s=100, end_s=50)


def test_a_sumocfg_is_read_as_sumo_reads_it(tmp_path):
    net = NETS / "t3_l1.net.xml"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "net.net.xml").write_text(net.read_text())
    (tmp_path / "sub" / "a.rou.xml").write_text('<routes><flow id="f" begin="0" end="1800" from="B1A1" to="A1B2" number="5"/></routes>')
    (tmp_path / "sub" / "b.rou.xml").write_text('<routes><vehicle id="v" depart="2400" route="r"/></routes>')
    cfg = tmp_path / "sub" / "x.sumocfg"
    cfg.write_text(
        '<configuration><input><net-file value="net.net.xml"/><route-files value="a.rou.xml, b.rou.xml"/>'
        '</input><time><begin value="0:05:00"/></time></configuration>'
    )
    sc = Scenario.load(cfg)
    # relative to the config's folder; routes split on commas; begin in h:m:s; no end: the routes' last departure
    assert sc.net == tmp_path / "sub" / "net.net.xml" and [r.name for r in sc.routes] == ["a.rou.xml", "b.rou.xml"]
    assert (sc.begin_s, sc.end_s, sc.name) == (300.0, 2400.0, "x")
    cfg.write_text(cfg.read_text().replace('<begin value="0:05:00"/>', '<begin value="soon"/>'))
    with pytest.raises(ScenarioError, match=r"x.sumocfg: <begin value='soon'> is not a time; write seconds"):
        Scenario.load(cfg)
    with pytest.raises(ScenarioError, match="not both"):
        Scenario.load(cfg, net=net, routes=[net])
