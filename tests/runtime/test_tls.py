"""`cluster up --tls` without a cluster: the CA and certificates, the copy a node runs, the start words, and how a
driver finds the cluster's client certificate. (The lab test runs it for real and captures the traffic.)"""

import ipaddress
import os
import stat
import subprocess

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from runtime import tls
from runtime.cli import main
from runtime.cluster import plan_up, reset_token_cache
from runtime.errors import ClusterError
from tests.runtime.test_cluster_launch import topo_with_hosts

NODES = ["device-0", "gateway-0", "edge-0"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A token path (and so a TLS folder) of the test's own; this process's TLS settings, and Ray's reading of
    them, restored after it (a later test's Ray must not try TLS)."""
    monkeypatch.setenv("TIERPIPE_TOKEN_PATH", str(tmp_path / "tierpipe" / "ray_token"))
    saved = {var: os.environ.pop(var, None) for var in tls.TLS_VARS}
    yield tmp_path
    for var, value in saved.items():
        if value is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = value
    reset_token_cache()


def test_node_certificates_are_signed_by_the_clusters_ca_for_the_nodes_address(home):
    folder = tls.local_dir(tls.cluster_id("198.19.3.1", 6379))
    assert folder == home / "tierpipe" / "tls" / "198.19.3.1_6379"
    ca = tls.authority(folder)
    assert stat.S_IMODE((folder / "ca.key").stat().st_mode) == 0o600
    assert tls.authority(folder)[0] == ca[0]  # a later `up` keeps the CA: running nodes still trust new ones
    bundle = tls.node_bundle(ca, "gateway-0", "198.19.2.1")
    certs = x509.load_pem_x509_certificates(bundle.encode())
    assert len(certs) == 2 and certs[1] == ca[0] and "PRIVATE KEY" in bundle  # cert, key, CA: in that order
    cert = certs[0]
    cert.verify_directly_issued_by(ca[0])
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("198.19.2.1") in san.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usage)  # mutual TLS: both ends
    # a host given by name gets a DNS name
    named = x509.load_pem_x509_certificates(tls.node_bundle(ca, "edge-0", "edge.lab.example").encode())[0]
    assert "edge.lab.example" in named.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    )


def test_a_node_writes_its_bundle_from_stdin_into_three_files_of_mode_600(home):
    ca = tls.authority(home / "ca")
    bundle = tls.node_bundle(ca, "device-0", "198.19.1.1")
    remote_home = home / "remote"
    remote_home.mkdir()
    script = tls.copy_script("198.19.3.1_6379", "device-0")
    assert "PRIVATE KEY" not in script and "MII" not in script  # the PEM travels on stdin, never on the command line
    for _ in range(2):  # twice: a second `up` overwrites
        done = subprocess.run(
            ["bash", "-c", script], input=bundle, env={**os.environ, "HOME": str(remote_home)}, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    folder = remote_home / ".tierpipe" / "tls" / "198.19.3.1_6379"
    files = {p.name: p for p in folder.iterdir()}
    assert sorted(files) == ["ca.pem", "device-0.key", "device-0.pem"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files.values())
    assert files["device-0.pem"].read_text() + files["device-0.key"].read_text() + files["ca.pem"].read_text() == bundle
    with pytest.raises(ClusterError, match="node 'a b': --tls needs node names of letters"):
        tls.copy_script("c", "a b")


def test_with_tls_every_node_gets_its_bundle_and_starts_with_its_own_certificate(home, capsys):
    hosts = {n: {"address": f"192.0.2.{i + 1}", "user": "pi"} for i, n in enumerate(NODES)}
    topo = topo_with_hosts(hosts)
    steps = plan_up(topo, port=6400, tls={n: f"<bundle of {n}>" for n in NODES})
    sent = {s.node: s.stdin for s in steps if s.what == "tls"}
    assert sent == {n: f"<bundle of {n}>" for n in NODES}
    starts = {s.node: s.script for s in steps if s.what == "start"}
    d = '"$HOME/.tierpipe/tls/192.0.2.3_6400'
    for node in NODES:
        words = f'RAY_USE_TLS=1 RAY_TLS_SERVER_CERT={d}/{node}.pem" RAY_TLS_SERVER_KEY={d}/{node}.key" RAY_TLS_CA_CERT={d}/ca.pem"'
        assert words in starts[node]
    # without --tls: no certificate step, no TLS word
    plain = plan_up(topo, port=6400)
    assert not [s for s in plain if s.what == "tls"] and not any("RAY_USE_TLS" in s.script for s in plain)
    path = home / "lab.yaml"
    path.write_text(topo.model_dump_json(by_alias=True, exclude={"source_file"}, exclude_none=True))
    assert main(["cluster", "up", str(path), "--tls", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("< certificate, key and CA") == 3 and "PRIVATE KEY" not in out
    assert not (home / "tierpipe" / "tls").exists()  # a dry run makes no CA


def test_a_driver_uses_tls_for_the_cluster_that_has_it_and_only_for_it(home):
    folder = tls.local_dir(tls.cluster_id("198.19.3.1", 6400))
    ca = tls.authority(folder)
    tls.write_driver(folder, ca, "198.19.3.1", 6400)
    assert stat.S_IMODE((folder / "driver.key").stat().st_mode) == 0o600
    assert not tls.use_tls("198.19.3.1:6401") and not tls.use_tls("auto") and "RAY_USE_TLS" not in os.environ
    assert tls.use_tls("198.19.3.1:6400")
    assert os.environ["RAY_USE_TLS"] == "1" and os.environ["RAY_TLS_SERVER_CERT"] == str(folder / "driver.pem")
    assert os.environ["RAY_TLS_CA_CERT"] == str(folder / "ca.pem")
    driver = x509.load_pem_x509_certificate((folder / "driver.pem").read_bytes())
    driver.verify_directly_issued_by(ca[0])
    tls.forget(tls.cluster_id("198.19.3.1", 6400))  # `cluster down` of that head and port
    assert not folder.exists()
