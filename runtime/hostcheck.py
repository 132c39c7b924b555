"""Do the hosts of a cluster match its head? Python (major.minor), Ray, torch and tierpipe, host by host.

Ray refuses nodes of another Python or Ray; a stage unpickled by another torch or tierpipe fails
later and less clearly, or not at all and computes something else. So ``tierpipe cluster up``
asks every host first, in its ``check`` step (one ssh per host): the Python beside the host's
``ray`` executable prints its versions (package metadata only: nothing is imported), and
:func:`differences` compares them with the head's. ``--install WHEEL`` then copies the wheel
to the hosts that differ and pip-installs it with the head's torch and Ray pinned
(:func:`plan_install`), and the check runs again.

The python compared is the one beside ``ray`` (``/opt/venv/bin/ray`` -> ``/opt/venv/bin/python``,
a bare ``ray`` -> the ``python`` beside ``command -v ray``): the interpreter Ray's workers run.
torch is compared without its local label (``2.13.0+cpu`` and a CUDA build ``2.13.0+cu126`` match:
tensors cross between them unchanged).
"""

from __future__ import annotations

import base64
import json
import platform
import re
import shlex
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from partition.topology import HostSpec

from .errors import ClusterError

__all__ = ["Versions", "probe_script", "parse_probe", "local_versions", "reference", "differences", "plan_install"]

MARKER = "tierpipe-versions"
FIELDS = ("python", "ray", "torch", "tierpipe")
# The probe, one line: package metadata only (importing torch would take seconds per host); the first
# distribution on sys.path wins, as for an import. No single quotes in it: it is shell-quoted.
_PROBE = (
    "import json, platform, sys; from importlib import metadata as m; "
    'd = dict(reversed([((p.metadata["Name"] or "").lower(), p.version) for p in m.distributions()])); '
    f'print("{MARKER}", json.dumps(dict(python="%d.%d" % sys.version_info[:2], ray=d.get("ray"), torch=d.get("torch"), '
    'tierpipe=d.get("tierpipe"), machine=platform.machine())))'
)


@dataclass(frozen=True)
class Versions:
    """What one host has; None: not installed there."""

    python: str
    ray: str | None
    torch: str | None
    tierpipe: str | None
    machine: str = ""

    def key(self, name: str) -> str | None:
        """The part of a version that must match: torch without its local label (+cpu, +cu126)."""
        value = getattr(self, name)
        return value.split("+", 1)[0] if name == "torch" and value else value


def _find_python(host: HostSpec) -> str:
    """Shell that sets ``$PY`` to the python beside the host's ``ray``, or exits 127 saying what is missing."""
    ray = shlex.quote(host.ray)
    missing = shlex.quote(f"ray is not installed (looked for {host.ray})")
    return (
        f"RAY=$(command -v {ray}) || {{ echo {missing} >&2; exit 127; }}; "
        'PY="$(dirname "$RAY")/python"; [ -x "$PY" ] || PY="$(dirname "$RAY")/python3"; '
        '[ -x "$PY" ] || { echo "no python beside $RAY: give the host a ray: inside a Python environment" >&2; exit 127; }; '
    )


def probe_script(host: HostSpec) -> str:
    """The ``check`` step's script: ``ray`` must be there, then the python beside it prints its versions."""
    return _find_python(host) + f'"$PY" -c {shlex.quote(_PROBE)}'


def parse_probe(node: str, stdout: str) -> Versions:
    """The versions a check step printed.

    Raises:
        ClusterError: no versions line (a host whose python could not run the probe).
    """
    for line in stdout.splitlines():
        if line.startswith(MARKER + " "):
            return Versions(**json.loads(line[len(MARKER) + 1 :]))
    raise ClusterError(
        f"{node}: the version check printed no versions (output: {stdout.strip()[-200:]!r}); is there a Python >= 3.8 beside its ray?"
    )


def local_versions() -> Versions:
    """This machine's versions, as the probe would print them."""
    from importlib import metadata

    def v(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return Versions(f"{sys.version_info[0]}.{sys.version_info[1]}", v("ray"), v("torch"), v("tierpipe"), platform.machine())


def reference(head: Versions, here: Versions) -> tuple[Versions, dict[str, str]]:
    """What every host must have: the head's versions, and this machine's for what the head lacks.

    Returns (versions, who has each: "head" or "this machine")."""
    values, whose = asdict(head), {}
    for name in FIELDS:
        whose[name] = "head"
        if values[name] is None and getattr(here, name) is not None:
            values[name], whose[name] = getattr(here, name), "this machine"
    return Versions(**values), whose


def _where(node: str, host: HostSpec) -> str:
    return f"{node} ({host.user + '@' if host.user else ''}{host.address})"


def differences(reports: dict[str, Versions], hosts: dict[str, HostSpec], ref: Versions, whose: dict[str, str]) -> dict[str, str]:
    """node -> how it differs from ``ref`` (only the nodes that differ), each a line naming the host and the fix."""
    out = {}
    for node, got in reports.items():
        parts = []
        for name in FIELDS:
            if got.key(name) == ref.key(name):
                continue
            theirs = f"{name} {getattr(got, name)}" if getattr(got, name) is not None else f"{name} not installed"
            parts.append(f"{theirs}, {whose[name]} has {getattr(ref, name)}")
        if not parts:
            continue
        if got.python != ref.python:
            fix = f"Ray needs one Python on every node: point its ray: at a Python {ref.python} environment"
        else:
            fix = "install it there or use --install WHEEL"
        arch = f" [{got.machine}]" if got.machine and got.machine != ref.machine else ""
        out[node] = f"{_where(node, hosts[node])}{arch}: {'; '.join(parts)}; {fix}"
    return out


def plan_install(hosts: dict[str, HostSpec], nodes: list[str], wheel: Path | None, ref: Versions, dry_run: bool = False) -> list:
    """One ``install`` step per node: the wheel over ssh's stdin (base64) into ``~/.tierpipe/wheels``, then
    ``pip install WHEEL torch==X ray[default]==Y`` with the python beside the host's ray (the wheel is
    removed once installed; kept when pip fails, to look at).

    Raises:
        ClusterError: no wheel file, or the head's Ray/torch unknown (nothing to pin).
    """
    from .cluster import Step

    if wheel is None or (not dry_run and not wheel.is_file()) or not wheel.name.endswith(".whl"):
        raise ClusterError(f"--install {wheel}: not a wheel file; build one with `pip wheel --no-deps -w dist .` in a tierpipe checkout")
    if ref.ray is None or ref.torch is None:
        raise ClusterError(
            "--install: neither the head nor this machine has Ray and torch, so there is no version to pin; install them on the head"
        )
    data = "<wheel>" if dry_run else base64.b64encode(wheel.read_bytes()).decode()
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+\.whl", wheel.name):  # it goes into a remote shell command
        raise ClusterError(f"--install {wheel.name}: a wheel's name has letters, digits and _.+- only; rename the file")
    remote = f'"$HOME/.tierpipe/wheels/{wheel.name}"'
    pins = [f"torch=={ref.key('torch')}", f"ray[default]=={ref.ray}"]
    steps = []
    for node in nodes:
        host = hosts[node]
        script = (
            f'{_find_python(host)}umask 077 && mkdir -p "$HOME/.tierpipe/wheels" && base64 -d > {remote} && '
            f'"$PY" -m pip install --quiet --disable-pip-version-check {remote} {" ".join(shlex.quote(p) for p in pins)} && rm -f {remote}'
        )
        steps.append(Step(node, host, "install", script, stdin=data))
    return steps
