"""Bring a Ray cluster up across lab machines from a topology's ``hosts``, with token authentication.

The commands are built as plain data first (:func:`plan_up`, :func:`plan_down`), so
``--dry-run`` prints exactly what would run and tests check it line by line; then a
runner executes them (``ssh`` for remote hosts, a local shell for ``cluster local``).

- The head runs on the sink tier's first node unless ``head=`` names another node.
- Every node is started with ``--labels tier=<tier>,tier-node=<node>``, the labels the
  runtime's ``label_selector`` looks for, and the CPU/memory figures of its host entry.
- ``RAY_AUTH_MODE=token`` on every node, reading the token from
  ``~/.tierpipe/ray_token``; ``up`` creates the token locally when there is none and
  copies it to each host over ssh's stdin (never on a command line).
- Idempotent: a node whose raylet (with its ``tier-node`` label) already runs is skipped.
- Each host's ``check`` step also prints its Python, Ray, torch and tierpipe versions, which
  ``cluster up`` compares with the head's before anything starts (``hostcheck.py``).
- With ``tls=`` every node is sent its certificate, key and the CA, and starts Ray with TLS (``tls.py``).
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from dataclasses import dataclass, field

from partition.topology import HostSpec, Topology

from . import tls as _tls
from .auth import auth_env, ensure_token, reset_token_cache, token_path, use_token
from .errors import ClusterError
from .hostcheck import probe_script
from .sessions import recorded_script, state_path

__all__ = [
    "Step",
    "token_path",
    "ensure_token",
    "auth_env",
    "use_token",
    "reset_token_cache",
    "plan_up",
    "plan_down",
    "plan_local",
    "execute",
    "cluster_status",
    "SshRunner",
]

log = logging.getLogger(__name__)
REMOTE_TOKEN = "$HOME/.tierpipe/ray_token"
TIER_LABEL, NODE_LABEL = "tier", "tier-node"
HOST_LABEL = "tier-host"  # the host's address: a host holding several nodes of a tier (a grouped lab) places them all


@dataclass(frozen=True)
class Step:
    """One command on one host. ``stdin`` (the token, a certificate, a wheel) is sent but never printed."""

    node: str
    host: HostSpec | None  # None: this machine, no ssh
    what: str  # "check", "token", "tls", "install", "start", "stop"
    script: str
    stdin: str | None = field(default=None, repr=False)

    def argv(self) -> list[str]:
        if self.host is None:
            return ["bash", "-c", self.script]
        return ssh_argv(self.host, self.script)

    def display(self) -> str:
        line = " ".join(shlex.quote(a) for a in self.argv())
        return line + (f"  < {_SENDS.get(self.what, self.what)}" if self.stdin is not None else "")


_SENDS = {"tls": "certificate, key and CA", "install": "wheel (base64)"}


def ssh_argv(host: HostSpec, script: str) -> list[str]:
    if host.known_hosts:  # the host's key is known beforehand (a lab): checked strictly, never learnt
        check = ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={os.path.expanduser(host.known_hosts)}"]
    else:
        check = ["-o", "StrictHostKeyChecking=accept-new"]
    argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", *check, "-p", str(host.port)]
    if host.key:
        argv += ["-i", os.path.expanduser(host.key)]
    argv.append(f"{host.user}@{host.address}" if host.user else host.address)
    argv.append(script)
    return argv


# ------------------------------------------------------------------ plans
def _nodes(topo: Topology) -> list[tuple[str, str]]:
    return [(tier.name, node) for tier in topo.path for node in tier.node_names()]


def _host_groups(topo: Topology) -> list[tuple[str, str]]:
    """(tier, node) of the first node on each distinct host, in path order: one Ray node per host."""
    seen, out = set(), []
    for tier, node in _nodes(topo):
        key = (topo.hosts[node].address, topo.hosts[node].port)
        if key not in seen:
            seen.add(key)
            out.append((tier, node))
    return out


def _check_hosts(topo: Topology) -> None:
    source = topo.source_file or topo.name
    missing = [node for _, node in _nodes(topo) if node not in topo.hosts]
    if missing:
        raise ClusterError(
            f"{source}: hosts: no host for {missing}; add under 'hosts:' e.g. "
            f"'{missing[0]}: {{address: 192.0.2.10, user: lab}}' for every node (`cluster local` needs none)"
        )
    seen: dict[tuple[str, int], str] = {}
    tiers = dict((node, tier) for tier, node in _nodes(topo))
    for node, host in topo.hosts.items():
        key = (host.address, host.port)
        if key in seen and tiers.get(seen[key]) != tiers.get(node):  # nodes of one tier may share a host (a grouped lab)
            other = seen[key]
            raise ClusterError(
                f"{source}: hosts.{node}: host {host.address}:{host.port} is also listed for {other} "
                f"(tier {tiers.get(other)!r}) while {node} is tier {tiers.get(node)!r}: one machine runs "
                "one Ray node with one set of labels; give each node its own host, or share hosts within a tier only"
            )
        seen.setdefault(key, node)


def _start_script(
    tier: str,
    node: str,
    head_address: str | None,
    port: int,
    cpus: int | None,
    memory_mb: float | None,
    extra: str = "",
    ray: str = "ray",
    more_labels: dict | None = None,
    env: dict[str, str] | None = None,
    node_ip: str | None = None,
    tls_words: str = "",
) -> str:
    labels = ",".join([f"{TIER_LABEL}={tier}", f"{NODE_LABEL}={node}", *(f"{k}={v}" for k, v in (more_labels or {}).items())])
    args = [ray, "start", "--labels", labels, "--disable-usage-stats"]
    args += ["--head", "--port", str(port), "--include-dashboard", "false"] if head_address is None else ["--address", head_address]
    if node_ip:  # a lab's namespace has no default route: Ray would guess 127.0.0.1 and no node could reach it
        args += ["--node-ip-address", node_ip]
    if cpus:
        args += ["--num-cpus", str(cpus)]
    if memory_mb:
        args += ["--memory", str(int(memory_mb * 1e6))]
    start = " ".join(shlex.quote(a) for a in args) + extra
    env_words = "".join(f"{k}={shlex.quote(v)} " for k, v in (env or {}).items())
    # "[r]aylet" cannot match this very command line, which holds the same words
    marker = shlex.quote(f'[r]aylet/raylet .*"{NODE_LABEL}": "{node}"')
    # ... of this cluster: its GCS port (another cluster's node of the same name, on a machine of several labs, is not it)
    ours = shlex.quote(f"--gcs-address=[^ ]*:{port}( |$)")
    return (
        f"if ps -ww -eo args | grep -E {marker} | grep -qE -- {ours}; then echo 'tierpipe: {node} already runs Ray'; "
        f"else {env_words}{tls_words}RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={REMOTE_TOKEN} {start}; fi"
    )


def plan_up(
    topo: Topology, head: str | None = None, port: int = 6379, token: str = "<token>", tls: dict[str, str] | None = None
) -> list[Step]:
    """Every command `cluster up` runs, host by host: checks (reachable, ray there, its versions), token
    copies, certificate copies (with ``tls``: node -> its bundle, :func:`runtime.tls.node_bundle`), then starts.

    Raises:
        ClusterError: hosts missing, or a host listed for nodes of two tiers.
    """
    _check_hosts(topo)
    nodes = _nodes(topo)
    head = head or topo.path[-1].node_names()[0]
    if head not in dict((n, t) for t, n in nodes):
        raise ClusterError(f"--head {head!r} is not a node of {topo.name}; nodes are {[n for _, n in nodes]}")
    head_host = topo.hosts[head]
    head_address = f"{head_host.address}:{port}"
    hosts = _host_groups(topo)  # a host holding several nodes (a grouped lab) runs one Ray node, named by its first
    head = next(n for _, n in hosts if topo.hosts[n].address == head_host.address and topo.hosts[n].port == head_host.port)
    order = [(t, n) for t, n in hosts if n == head] + [(t, n) for t, n in hosts if n != head]
    steps = [Step(n, topo.hosts[n], "check", probe_script(topo.hosts[n])) for _, n in order]
    steps += [
        Step(n, topo.hosts[n], "token", 'umask 077 && mkdir -p "$HOME/.tierpipe" && cat > "$HOME/.tierpipe/ray_token"', stdin=token)
        for _, n in order
    ]
    cluster = _tls.cluster_id(head_host.address, port)
    if tls is not None:
        steps += [Step(n, topo.hosts[n], "tls", _tls.copy_script(cluster, n), stdin=tls[n]) for _, n in order]
    tier_labels = {t.name: t.labels for t in topo.path}
    for tier, node in order:
        host = topo.hosts[node]
        steps.append(
            Step(
                node,
                host,
                "start",
                _start_script(
                    tier,
                    node,
                    None if node == head else head_address,
                    port,
                    host.cpus,
                    host.memory_mb,
                    ray=host.ray,
                    more_labels={**tier_labels[tier], HOST_LABEL: host.address},
                    env=host.env,
                    node_ip=host.address if topo.lab is not None else None,
                    tls_words=_tls.start_words(cluster, node) if tls is not None else "",
                ),
            )
        )
    return steps


def plan_down(topo: Topology) -> list[Step]:
    _check_hosts(topo)
    return [Step(n, topo.hosts[n], "stop", f"{shlex.quote(topo.hosts[n].ray)} stop") for _, n in _host_groups(topo)]


def plan_local(topo: Topology, port: int = 6379, per_node_limit: int = 8, object_store_mb: int = 150) -> list[Step]:
    """A multi-node cluster on this machine: one raylet per node (one per tier when there are more
    than ``per_node_limit`` nodes), labelled as in production, token auth on. Each raylet starts in
    a session of its own, recorded so that ``cluster down --local`` stops only these (``sessions.py``)."""
    nodes = _nodes(topo)
    per_node = len(nodes) <= per_node_limit
    raylets = nodes if per_node else [(tier.name, tier.node_names()[0]) for tier in topo.path]
    head_tier, head = raylets[-1]
    order = [raylets[-1]] + raylets[:-1]
    steps = []
    for tier, node in order:
        extra = f" --object-store-memory {object_store_mb * 1_000_000} --num-cpus 1"
        label_node = node if per_node else f"{tier}-*"
        script = _start_script(tier, label_node, None if node == head else f"127.0.0.1:{port}", port, None, None, extra)
        if not per_node:  # one raylet for the whole tier: label the tier only
            script = script.replace(f",{NODE_LABEL}={label_node}", "")
        script = script.replace(REMOTE_TOKEN, shlex.quote(str(token_path())))
        steps.append(Step(node, None, "start", recorded_script(script, state_path(token_path().parent, port))))
    return steps


# ------------------------------------------------------------------ running
class SshRunner:
    """Runs steps with the ordinary ssh client (local steps with bash)."""

    def __init__(self, timeout_s: float = 120.0) -> None:
        self.timeout_s = timeout_s

    def __call__(self, step: Step) -> subprocess.CompletedProcess:
        return subprocess.run(step.argv(), input=step.stdin, capture_output=True, text=True, timeout=self.timeout_s)


def _where(step: Step) -> str:
    if step.host is None:
        return f"{step.node} (this machine)"
    return f"{step.node} ({step.host.user + '@' if step.host.user else ''}{step.host.address}:{step.host.port})"


def execute(steps: list[Step], runner=None, verify=None) -> list[str]:
    """Run the steps: all checks first (nothing starts if a host is unreachable), then the rest in order.

    ``verify``, when given, is called with what each check printed (node -> stdout) once every host
    answered, before anything else runs; it raises to stop there (:mod:`runtime.hostcheck`).

    Returns one line per node saying what happened.

    Raises:
        ClusterError: naming the host, the command and ssh's or ray's own error, and saying
            exactly which nodes had already started.
    """
    runner = runner or SshRunner()
    checks = [s for s in steps if s.what == "check"]
    failures, printed = [], {}
    for step in checks:
        result = _run(runner, step)
        printed[step.node] = result.stdout or ""
        if result.returncode != 0:
            failures.append(f"{_where(step)}: {_reason(result)}")
    if failures:
        raise ClusterError(
            "cannot reach every host, so nothing was started:\n  "
            + "\n  ".join(failures)
            + "\nFix ssh access (keys, user, port in the topology's hosts:) and run `tierpipe cluster up` again"
        )
    if verify is not None and checks:
        verify(printed)
    done: list[str] = []
    started: list[str] = []
    for step in steps:
        if step.what == "check":
            continue
        result = _run(runner, step)
        if result.returncode != 0:
            refused = step.what == "start" and "Failed to connect to GCS" in (result.stderr or "") + (result.stdout or "")
            raise ClusterError(
                f"{step.what} failed on {_where(step)}: {_reason(result)}\n"
                + (_REFUSED if refused else "")
                + f"already started: {started or 'nothing'}. Fix it and run `up` again (nodes already up are skipped), "
                "or `tierpipe cluster down` to stop them"
            )
        if step.what == "start":
            state = "already running" if "already runs Ray" in result.stdout else "started"
            if state == "started":
                started.append(step.node)
            done.append(f"{step.node}: {state}")
        elif step.what == "stop":
            done.append(f"{step.node}: stopped")
    return done


_REFUSED = (
    "the head did not let this node in: is it still up (`tierpipe cluster status`)? A cluster started with `--tls` "
    "refuses a node without its certificate "
    "(`tierpipe cluster up --tls` gives every node one; to change a running cluster, `cluster down` first), "
    "and a head of another cluster refuses this one's token\n"
)


def _run(runner, step: Step) -> subprocess.CompletedProcess:
    log.info("%s: %s", _where(step), step.display())
    try:
        return runner(step)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(step.argv(), 124, "", "timed out")
    except FileNotFoundError as exc:
        return subprocess.CompletedProcess(step.argv(), 127, "", str(exc))


def _reason(result: subprocess.CompletedProcess) -> str:
    text = (result.stderr or result.stdout or "").strip().splitlines()
    useful = [line for line in text if line.strip() and "Warning: Permanently added" not in line]
    return f"exit {result.returncode}: " + (" | ".join(useful[-3:]) if useful else "no output")


# ------------------------------------------------------------------ status
def cluster_status(topo: Topology, nodes: list[dict]) -> tuple[list[dict], bool]:
    """Compare what Ray reports (``ray.nodes()``) with the topology. Returns (rows, all present and labelled)."""
    alive = [n for n in nodes if n.get("Alive")]
    by_node = {n.get("Labels", {}).get(NODE_LABEL): n for n in alive if n.get("Labels", {}).get(NODE_LABEL)}
    by_host = {(n["Labels"].get(TIER_LABEL), n["Labels"][HOST_LABEL]): n for n in alive if n.get("Labels", {}).get(HOST_LABEL)}
    by_tier: dict[str, list[dict]] = {}
    for n in alive:
        by_tier.setdefault(n.get("Labels", {}).get(TIER_LABEL), []).append(n)
    rows, ok = [], True
    for tier, node in _nodes(topo):
        found = by_node.get(node)
        if found is None and node in topo.hosts:  # a node of a host that holds several (named by its first)
            found = by_host.get((tier, topo.hosts[node].address))
        if found is None and by_tier.get(tier) and not any(NODE_LABEL in n.get("Labels", {}) for n in by_tier[tier]):
            found = by_tier[tier][0]  # one raylet for the whole tier (`cluster local`, large)
        if found is None:
            rows.append({"node": node, "tier": tier, "state": "missing", "labels": "", "resources": ""})
            ok = False
            continue
        labels = {k: v for k, v in found.get("Labels", {}).items() if not k.startswith("ray.io")}
        state = "up" if labels.get(TIER_LABEL) == tier else f"mislabelled (tier={labels.get(TIER_LABEL)!r})"
        ok &= state == "up"
        res = found.get("Resources", {})
        rows.append(
            {
                "node": node,
                "tier": tier,
                "state": state,
                "labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
                "resources": f"{res.get('CPU', 0):g} CPU, {res.get('memory', 0) / 1e9:.1f} GB"
                + (f", {res['GPU']:g} GPU" if res.get("GPU") else ""),
            }
        )
    return rows, ok
