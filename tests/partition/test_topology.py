import pathlib
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    (
        "fan-in does not add up",
        ("nodes: 2, speed: 1", "nodes: 3, speed: 1"),
        ["topo.yaml", "fan_in", "not a multiple", "list under 'fan_in:'"],
    ),
    ("source on a missing node", ("{count: 4,", "{nodes: [device-9], count: 4,"), ["topo.yaml", "sources[0].nodes[0]", "device-9"]),
    ("unparseable unit", ("latency: 5 ms}", "latency: 5 parsecs}"), ["topo.yaml", "links[0].latency", "5 parsecs", "5 ms"]),
    ("wrong dimension", ("memory: 512 MB", "memory: 512 ms"), ["topo.yaml", "tiers[0].memory", "512 MB"]),
    # a bare number is never read in some base unit: 20000000 (bit/s meant) was once 2e7 Mbit/s
    (
        "bare bandwidth",
        ("bandwidth: 20 Mbit/s", "bandwidth: 20000000"),
        [
            'topo.yaml: links[0].bandwidth: 20000000 has no unit; write it with one, e.g. "20 Mbit/s" (accepted: bit/s, '
            "kbit/s, Mbit/s, Gbit/s, bps, kbps, Mbps, Gbps, B/s, kB/s, MB/s, GB/s)"
        ],
    ),
    ("bare latency", ("latency: 5 ms", "latency: 4"), ["topo.yaml: links[0].latency: 4 has no unit", "accepted: ns, us, µs, ms, s"]),
    ("bare memory", ("memory: 512 MB", "memory: 1024"), ["topo.yaml: tiers[0].memory: 1024 has no unit", "accepted: B, kB, MB"]),
    ("quoted bare number", ("bandwidth: 20 Mbit/s", "bandwidth: '20'"), ["topo.yaml: links[0].bandwidth: 20 has no unit"]),
    ("bare power", ("speed: 0.1,", "speed: 0.1, power: 2,"), ["topo.yaml: tiers[0].power: 2 has no unit", "accepted: uW, mW, W, kW"]),
    (
        "bare condition time",
        ("sources:", "conditions: [{at: 10, link: device->gateway, bandwidth: 2 Mbit/s}]\nsources:"),
        ["topo.yaml: conditions[0].at: 10 has no unit", "accepted: ms, s"],
    ),
    (
        "bare battery",
        ("sources:", "conditions: [{at: 10 s, node: device-0, battery: 15}]\nsources:"),
        ['topo.yaml: conditions[0].battery: 15 has no unit; write it with one, e.g. "15 %"'],
    ),
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


# --------------------------------------------------------------- malformed files and fuzzing

MALFORMED = sorted((pathlib.Path(__file__).parent / "malformed").glob("*.yaml"))


@pytest.mark.timeout(10)  # a guard against hangs, not a speed claim: each takes milliseconds
@pytest.mark.parametrize("path", MALFORMED, ids=[p.stem for p in MALFORMED])
def test_every_malformed_topology_is_a_named_error(path):
    with pytest.raises(TopologyError) as err:
        Topology.load(path)
    msg = str(err.value)
    assert str(path) in msg  # names the file
    assert len(msg) < 2000  # no expanded alias or whole file echoed back


def test_the_corpus_has_a_mistake_per_file():
    assert len(MALFORMED) >= 40


def test_an_oversized_file_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 200_000)
    with pytest.raises(TopologyError, match="over the 1,048,576-byte limit"):
        Topology.load(big)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from(list("{}[]:,-&*!# \n\tabc01.'\"|>%@")), max_size=300))
def test_any_text_loads_or_is_a_topology_error(text):
    try:
        Topology.from_yaml(text, "fuzz.yaml")
    except TopologyError as exc:
        assert str(exc).startswith("fuzz.yaml")


VALID = {
    "name": "lab",
    "tiers": [{"name": "device", "nodes": 2, "speed": 0.1}, {"name": "edge", "nodes": 1, "speed": 2}],
    "links": [{"from": "device", "to": "edge", "bandwidth": "20 Mbit/s"}],
}
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.lists(st.integers(-3, 3), max_size=4),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        [
            "name",
            "tiers.0.nodes",
            "tiers.0.speed",
            "tiers.0.memory",
            "tiers.1.name",
            "links.0.bandwidth",
            "links.0.latency",
            "links.0.loss",
            "links.0.from",
            "sources",
            "fan_in",
            "sink",
            "emulate",
            "hosts",
        ]
    ),
    VALUES,
)
def test_any_wrong_value_in_a_valid_file_is_a_topology_error_naming_the_field(field, value):
    import copy

    data = copy.deepcopy(VALID)
    target, *path = field.split(".")
    if not path:
        data[target] = value
    else:
        data[target][int(path[0])][path[1]] = value
    try:
        Topology.from_dict(data, "fuzz.yaml")
    except TopologyError as exc:
        assert str(exc).startswith("fuzz.yaml")


def test_energy_fields_read_units_and_name_bad_values():
    topo = Topology.from_yaml("""
tiers: [{name: device, speed: 0.1, power: 500 mW}, {name: edge, speed: 4}]
links: [{from: device, to: edge, bandwidth: 20 Mbit/s, tx_energy: 12.5 nJ/bit}]
""")
    assert topo.tiers[0].power_w == pytest.approx(0.5) and topo.tiers[1].power_w == 2.0  # default 2 W
    assert topo.links[0].tx_energy_nj_per_byte == pytest.approx(100.0)
    with pytest.raises(TopologyError, match=r"tiers\[0\]\.power.*W"):
        Topology.from_yaml(
            "tiers: [{name: device, speed: 1, power: 3 Mbit/s}, {name: edge, speed: 1}]\n"
            "links: [{from: device, to: edge, bandwidth: 20 Mbit/s}]"
        )


def test_zero_needs_no_unit_and_common_spellings_load(tmp_path):
    text = GOOD.replace("latency: 5 ms", "latency: 0").replace("bandwidth: 1 Gbit/s", "bandwidth: 1 Gbps")
    topo = Topology.load(write(tmp_path, text.replace("memory: 2 GiB", "memory: 2048 MiB")))
    assert topo.links[0].latency_ms == 0.0 and topo.links[1].bandwidth_mbps == 1000.0
    assert topo.tiers[1].memory_mb == pytest.approx(2048 * 2**20 / 1e6)


def test_summary_says_when_nodes_was_not_given(tmp_path):
    text = GOOD.replace("{name: edge, nodes: 1, gflops", "{name: edge, gflops")
    summary = Topology.load(write(tmp_path, text)).summary()
    assert "  tier edge: nodes not given, 1 assumed" in summary.splitlines()
    assert "nodes not given" not in Topology.load(write(tmp_path, GOOD)).summary()  # nodes: 1 written out: nothing assumed


def test_a_dump_with_the_file_keys_keeps_units_and_loads_back(tmp_path):
    topo = Topology.load(write(tmp_path, GOOD + "conditions: [{at: 10 s, node: device-0, battery: 15 %}]\n"))
    data = topo.model_dump(by_alias=True, exclude={"source_file"})
    assert data["links"][0]["bandwidth"] == "20 Mbit/s" and data["tiers"][1]["memory"] == "2147.483648 MB"
    assert data["conditions"][0]["at"] == "10 s" and data["conditions"][0]["battery"] == "15 %"
    again = Topology.from_dict(data, source=topo.source_file)
    assert again == topo
    assert topo.model_dump()["links"][0]["bandwidth_mbps"] == 20.0  # under the field's name: the number, unit in the name
