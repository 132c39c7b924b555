"""Intra-cluster encryption: a CA, a certificate per node, and Ray's TLS settings (``cluster up --tls``).

Ray encrypts every gRPC channel (GCS, raylets, workers, object transfers: the activations between
stages) when each of its processes starts with ``RAY_USE_TLS=1`` and ``RAY_TLS_SERVER_CERT``,
``RAY_TLS_SERVER_KEY``, ``RAY_TLS_CA_CERT``; servers require a client certificate signed by the
CA (mutual TLS), so a process without one is refused at the handshake.

- The CA lives on this machine, in ``~/.tierpipe/tls/<head>_<port>/`` (beside the cluster token):
  ``ca.pem``, ``ca.key`` (mode 600, reused by a later ``up`` so running nodes keep trusting new ones),
  and the driver's own ``driver.pem``/``driver.key``. That folder's presence is what says "this
  cluster uses TLS": :func:`use_tls` (called where the token is) finds it by the cluster's address.
- Each node gets a certificate whose SAN is its host's address (plus 127.0.0.1/localhost for Ray's
  local connections), sent with its key and the CA over ssh's stdin into
  ``~/.tierpipe/tls/<head>_<port>/<node>.pem|.key`` there (mode 600, never on a command line).

Keys are ECDSA P-256, made by the ``cryptography`` package.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import shlex
import shutil
import socket
from pathlib import Path

from .auth import write_private as _write_private
from .errors import ClusterError

__all__ = [
    "cluster_id",
    "local_dir",
    "authority",
    "issue",
    "node_bundle",
    "write_driver",
    "copy_script",
    "start_words",
    "tls_env",
    "use_tls",
    "forget",
]

TLS_VARS = ("RAY_USE_TLS", "RAY_TLS_SERVER_CERT", "RAY_TLS_SERVER_KEY", "RAY_TLS_CA_CERT")
_SAFE = re.compile(r"[A-Za-z0-9._-]+")


def cluster_id(head_address: str, port: int) -> str:
    """The folder name of one cluster's TLS files: ``198.19.2.1_6379``."""
    return re.sub(r"[^A-Za-z0-9.-]", "_", f"{head_address}_{port}")


def local_dir(cluster: str) -> Path:
    from .auth import token_path

    return token_path().parent / "tls" / cluster


def _remote(cluster: str, file: str = "") -> str:
    """A path on a node, double-quoted so that its shell expands $HOME."""
    return f'"$HOME/.tierpipe/tls/{cluster}{"/" + file if file else ""}"'


def _name(address: str):
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(address))
    except ValueError:
        return x509.DNSName(address)


def authority(folder: Path):
    """The cluster's CA (certificate, key): loaded from ``folder``, or made there (10 years) when absent."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path, key_path = folder / "ca.pem", folder / "ca.key"
    if cert_path.exists() and key_path.exists():
        return x509.load_pem_x509_certificate(cert_path.read_bytes()), serialization.load_pem_private_key(key_path.read_bytes(), None)
    if cert_path.exists() != key_path.exists():  # never make a new CA over half of an old one: its nodes would refuse
        raise ClusterError(
            f"{folder} holds {'ca.pem' if cert_path.exists() else 'ca.key'} without its pair: the cluster's CA is damaged; "
            f"stop the cluster (`tierpipe cluster down`), remove {folder} and run `cluster up --tls` again"
        )
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"tierpipe cluster CA {folder.name}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    _write_private(key_path, key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(pem))
    return cert, key


def issue(ca, common_name: str, addresses: list[str], days: int = 365) -> tuple[bytes, bytes]:
    """A certificate (server and client use) for ``addresses`` signed by ``ca``; returns (cert PEM, key PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    names = list(dict.fromkeys([*addresses, "127.0.0.1", "localhost"]))
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([_name(a) for a in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return cert.public_bytes(pem), key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def node_bundle(ca, node: str, address: str) -> str:
    """What one node is sent: its certificate, its key, the CA certificate (PEM, in that order)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    cert, key = issue(ca, node, [address])
    return (cert + key + ca[0].public_bytes(Encoding.PEM)).decode()


def write_driver(folder: Path, ca, head_address: str, port: int) -> None:
    """The driver's certificate: SAN the head's address (a driver on the head, or in a lab's head namespace)
    and the address this machine reaches the head from."""
    addresses = [head_address]
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # no packet is sent: only the route is looked up
            s.connect((head_address, port))
            addresses.append(s.getsockname()[0])
    except OSError:
        pass
    cert, key = issue(ca, "tierpipe driver", addresses)
    _write_private(folder / "driver.key", key)
    (folder / "driver.pem").write_bytes(cert)


def _check_name(node: str) -> None:
    if not _SAFE.fullmatch(node):
        raise ClusterError(f"node {node!r}: --tls needs node names of letters, digits, '.', '_' and '-' (they name its certificate files)")


def copy_script(cluster: str, node: str) -> str:
    """The ``tls`` step: split the bundle on stdin into ``<node>.pem``, ``<node>.key``, ``ca.pem``, all mode 600."""
    _check_name(node)
    d = _remote(cluster)
    files = f"{node}.pem {node}.key ca.pem"
    new = " ".join(f"{f}.new" for f in files.split())
    split = shlex.quote(f'BEGIN {{ split("{new}", f, " ") }} /^-----BEGIN / {{ n++ }} n {{ print > f[n] }}')
    # written beside, then moved into place: a failed copy never removes what is there (on a lab, the CA itself)
    moves = " && ".join(f"mv -f {f}.new {f}" for f in files.split())
    return f"umask 077 && mkdir -p {d} && cd {d} && rm -f {new} && awk {split} && chmod 600 {new} && {moves}"


def start_words(cluster: str, node: str) -> str:
    """The environment words ``ray start`` gets on ``node``: TLS on, its certificate, key and the CA."""
    _check_name(node)
    return (
        f"RAY_USE_TLS=1 RAY_TLS_SERVER_CERT={_remote(cluster, node + '.pem')} RAY_TLS_SERVER_KEY={_remote(cluster, node + '.key')} "
        f"RAY_TLS_CA_CERT={_remote(cluster, 'ca.pem')} "
    )


def tls_env(folder: Path) -> dict[str, str]:
    """The environment of a TLS client of the cluster whose files are in ``folder``."""
    return {
        "RAY_USE_TLS": "1",
        "RAY_TLS_SERVER_CERT": str(folder / "driver.pem"),
        "RAY_TLS_SERVER_KEY": str(folder / "driver.key"),
        "RAY_TLS_CA_CERT": str(folder / "ca.pem"),
    }


def use_tls(address: str | None) -> bool:
    """Make this process a TLS client of the cluster at ``host:port`` when ``cluster up --tls`` made it.

    Returns whether it uses TLS. Call it before ``ray.init`` (as :func:`runtime.cluster.use_token`);
    an address without a port (``auto``) is looked up in no folder and changes nothing.
    """
    if not address or ":" not in address:
        return False
    host, _, port = address.rpartition(":")
    folder = local_dir(cluster_id(host, int(port))) if port.isdigit() else None
    if folder is None or not (folder / "driver.pem").exists():
        return False
    os.environ.update(tls_env(folder))
    from .auth import reset_token_cache

    reset_token_cache()  # re-reads Ray's settings (RAY_USE_TLS among them) in this process
    return True


def forget(cluster: str) -> None:
    """A cluster started without ``--tls`` on this head and port: its old TLS files must not make clients use TLS."""
    shutil.rmtree(local_dir(cluster), ignore_errors=True)
