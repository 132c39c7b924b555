import textwrap

import pytest

from partition import Topology, TopologyError

GOOD = textwrap.dedent("""
    name: lab
    tiers:
      - {name: device, nodes: 4, speed: 0.1, memory: 512 MB}
      - {name: gateway, nodes: 2, speed: 1, memory: 2 GiB}
      - {name: edge, nodes: 1, gflops: 200, memory: 16 GB}
    links:
      - {from: device, to: gateway, bandwidth: 20 Mbit/s, latency: 5 ms}
      - {from: gateway, to: edge, bandwidth: 1 Gbit/s, latency: 1 ms}
    sources:
      - {count: 4, fps: 15, shape: [1, 3, 32, 32]}
""")


def write(tmp_path, text, name="topo.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_units_are_converted_once_at_load(tmp_path):
    topo = Topology.load(write(tmp_path, GOOD))
    assert topo.links[0].bandwidth_mbps == 20.0
    assert topo.links[1].bandwidth_mbps == 1000.0
    assert topo.links[0].latency_ms == 5.0
    assert topo.tiers[0].memory_mb == 512.0
    assert topo.tiers[1].memory_mb == pytest.approx(2 * 2**30 / 1e6)
    # 20 Mbit/s carries 2.5 MB/s: 250 kB take 100 ms plus 5 ms latency
    assert topo.links[0].transfer_s(250_000) == pytest.approx(0.105)


def test_fan_in_is_derived_from_even_counts(tmp_path):
    topo = Topology.load(write(tmp_path, GOOD))
    assert topo.children["gateway-0"] == ["device-0", "device-1"]
    assert topo.children["edge-0"] == ["gateway-0", "gateway-1"]
    assert topo.parents["device-3"] == "gateway-1"
    assert [topo.max_streams(i) for i in range(3)] == [1, 2, 4]


def test_explicit_uneven_fan_in(tmp_path):
    text = GOOD.replace("nodes: 2, speed: 1", "nodes: 3, speed: 1") + textwrap.dedent("""
        fan_in:
          gateway-0: [device-0, device-1]
          gateway-1: [device-2]
          gateway-2: [device-3]
    """)
    topo = Topology.load(write(tmp_path, text))
    assert topo.max_streams(1) == 2 and topo.max_streams(2) == 4


@pytest.mark.parametrize("name", ["smart_city", "three_tier", "local"])
def test_shipped_topologies_load_by_name(name):
    topo = Topology.load(name)
    assert topo.name == name and len(topo.path) >= 3


def test_smart_city_has_the_advertised_shape():
    topo = Topology.load("smart_city")
    assert [t.nodes for t in topo.tiers] == [16, 4, 1]
    assert len(topo.source_nodes()) == 16 and topo.max_streams(1) == 4 and topo.max_streams(2) == 16


BAD = [
    # (what, replacement for GOOD text or full text, words the message must contain)
    ("unknown field", ("speed: 0.1,", "speed: 0.1, colour: red,"), ["topo.yaml", "tiers[0].colour", "unknown field"]),
    ("missing tier", ("{from: gateway, to: edge", "{from: gateway, to: cloud"), ["topo.yaml", "links[1].to", "cloud", "missing tier"]),
    ("negative capacity", ("speed: 0.1,", "speed: -2,"), ["topo.yaml", "tiers[0].speed", "greater than 0", "-2"]),
    ("zero capacity", ("gflops: 200", "gflops: 0"), ["topo.yaml", "tiers[2].gflops", "greater than 0"]),
    ("zero bandwidth", ("bandwidth: 20 Mbit/s", "bandwidth: 0 Mbit/s"), ["topo.yaml", "links[0].bandwidth", "greater than 0"]),
    ("link skips a tier", ("{from: gateway, to: edge", "{from: device, to: edge"), ["topo.yaml", "links[1]", "skips"]),
    ("link goes backwards", ("{from: gateway, to: edge", "{from: edge, to: gateway"), ["topo.yaml", "links[1]", "backwards"]),
    ("fan-in does not add up", ("nodes: 2, speed: 1", "nodes: 3, speed: 1"), ["topo.yaml", "fan_in", "not a multiple", "list under 'fan_in:'"]),
    ("source on a missing node", ("{count: 4,", "{nodes: [device-9], count: 4,"), ["topo.yaml", "sources[0].nodes[0]", "device-9"]),
    ("unparseable unit", ("latency: 5 ms}", "latency: 5 parsecs}"), ["topo.yaml", "links[0].latency", "5 parsecs", "5 ms"]),
    ("wrong dimension", ("memory: 512 MB", "memory: 512 ms"), ["topo.yaml", "tiers[0].memory", "512 MB"]),
]


@pytest.mark.parametrize("what,edit,words", BAD, ids=[b[0] for b in BAD])
def test_bad_topology_names_file_and_field(tmp_path, what, edit, words):
    old, new = edit
    assert old in GOOD
    with pytest.raises(TopologyError) as err:
        Topology.load(write(tmp_path, GOOD.replace(old, new, 1)))
    for word in words:
        assert word in str(err.value), (what, str(err.value))


def test_fan_in_lists_that_miss_a_node(tmp_path):
    text = GOOD + "fan_in:\n  gateway-0: [device-0, device-1]\n  gateway-1: [device-2]\n"
    with pytest.raises(TopologyError, match=r"fan-in does not add up.*device-3"):
        Topology.load(write(tmp_path, text))


def test_yaml_syntax_error_names_line(tmp_path):
    with pytest.raises(TopologyError, match=r"topo.yaml: line 3, column \d+: YAML syntax error"):
        Topology.load(write(tmp_path, "tiers:\n  - {name: device\n  - oops: [\n"))


def test_empty_file(tmp_path):
    with pytest.raises(TopologyError, match="topo.yaml: the file is empty"):
        Topology.load(write(tmp_path, "\n"))


def test_no_tiers(tmp_path):
    with pytest.raises(TopologyError, match=r"topo.yaml: tiers: .*at least 1"):
        Topology.load(write(tmp_path, "name: x\ntiers: []\n"))


def test_unknown_name_lists_shipped():
    with pytest.raises(TopologyError, match="smart_city"):
        Topology.load("no_such_topology")
