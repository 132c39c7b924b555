"""Conditions over time: parsed with units, checked against the topology, one timeline per node."""

import pytest

from partition import Topology, TopologyError
from partition.conditions import changes_for, load_conditions

TOPO = """
tiers: [{name: device, speed: 0.1, nodes: 4}, {name: gateway, speed: 1, nodes: 2}, {name: edge, speed: 4}]
links: [{from: device, to: gateway, bandwidth: 20 Mbit/s}, {from: gateway, to: edge, bandwidth: 1 Gbit/s}]
conditions:
  - {at: 10 s, link: device->gateway, bandwidth: 2 Mbit/s}
  - {at: 10 s, node: device-3, bandwidth: 1 Mbit/s}
  - {at: 20 s, node: gateway-1, speed: 0.2}
  - {at: 30 s, node: device-0, battery: 15 %}
  - {at: 40000 ms, link: device->gateway, bandwidth: 20 Mbit/s}
"""


def test_the_issue_example_gives_each_node_its_own_timeline():
    topo = Topology.from_yaml(TOPO)
    # a link entry reaches every device's uplink; a node entry only its node; later entries win
    assert changes_for(topo.conditions, topo, "device-3") == [
        (10.0, "bandwidth_mbps", 2.0),
        (10.0, "bandwidth_mbps", 1.0),
        (40.0, "bandwidth_mbps", 20.0),
    ]
    assert changes_for(topo.conditions, topo, "device-0") == [
        (10.0, "bandwidth_mbps", 2.0),
        (30.0, "battery_pct", 15.0),
        (40.0, "bandwidth_mbps", 20.0),
    ]
    assert changes_for(topo.conditions, topo, "gateway-1") == [(20.0, "speed", 0.2)]
    assert changes_for(topo.conditions, topo, "gateway-0") == [] == changes_for(topo.conditions, topo, "edge-0")


def test_a_conditions_file_is_checked_against_the_topology_and_names_the_entry(tmp_path):
    topo = Topology.from_yaml(TOPO)
    good = tmp_path / "wifi.yaml"
    good.write_text("conditions:\n  - {at: 5 s, node: device-1, bandwidth: 500 kbit/s}\n")
    assert changes_for(load_conditions(good, topo), topo, "device-1") == [(5.0, "bandwidth_mbps", 0.5)]
    bare = tmp_path / "bare.yaml"
    bare.write_text("- {at: 1 s, node: gateway-0, speed: 0.5}\n")
    assert len(load_conditions(bare, topo)) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("conditions:\n  - {at: 5 s, node: device-1, bandwidth: 1 Mbit/s}\n  - {at: 6 s, node: camera-9, speed: 1}\n")
    with pytest.raises(TopologyError, match=r"bad\.yaml: conditions\[1\]\.node: no node named 'camera-9'.*device-0"):
        load_conditions(bad, topo)
    with pytest.raises(TopologyError, match=r"missing\.yaml: cannot read"):
        load_conditions(tmp_path / "missing.yaml", topo)
    with pytest.raises(TopologyError, match=r"conditions\[0\]\.bandwidth"):
        (tmp_path / "u.yaml").write_text("[{at: 1 s, node: device-0, bandwidth: 3 kg}]")
        load_conditions(tmp_path / "u.yaml", topo)
