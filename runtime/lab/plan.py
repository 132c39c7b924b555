"""What a lab is made of, computed from a topology without touching the machine.

A lab puts every node of a topology's path on a *host* of its own: a network namespace with an
address, an sshd and a CPU quota. When the path has more nodes than ``max_hosts``, the nodes of a
tier are *grouped*: one host holds several nodes of one tier, all with the same parent host.

- **Addresses**: ``198.18.T.J`` (``network`` 198.18.0.0/16 by default, inside the benchmarking
  range 198.18.0.0/15): ``T`` the tier's position on the path plus one, ``J`` the host's index in
  its tier plus one. ``198.18.0.1`` is the root namespace's end of the lab.
- **Links**: one veth pair per host, from the host (``<prefix><i>u``) to its parent host
  (``<prefix><i>d``). A host on the sink tier has no parent: its pair ends in the root namespace
  on the lab bridge ``<prefix>br``, which joins the sink hosts to each other and to this
  machine (a bridge switches at layer 2, so the root namespace forwards nothing). Every host
  forwards for the hosts below it, so any two hosts reach each other along the tree, over the
  shaped links a frame would cross.
- **Shaping**: both ends of a host's pair get a tbf at its tier's link ``bandwidth`` (times the
  nodes a grouped host holds: each node has a link of its own); netem adds ``latency``,
  ``jitter`` and ``loss`` where the kernel has it.
- **CPU**: a node of ``speed`` s gets ``min(s x cores_per_speed, 1)`` cores (speed 1.0 = one core of this
  machine by default; never more than one, since a stage runs one thread: a faster tier's quota would
  go unused while it starved the others). When the quotas add up to more than ``machine_cores``, all of
  them are multiplied by ``cpu_scale = machine_cores / demand``. The
  quota is given over the shortest period that holds it (:func:`period_for`), so a stage of a few
  milliseconds already runs at its tier's pace. The quota binds the node's *stages*: a stage actor
  joins its host's cgroup once it has started (``runtime/nodecpu.py``); sshd and Ray's daemons
  run in ``daemons_cgroup`` without a quota, since a Ray node of 0.04 cores would take minutes to start.

>>> from partition import Topology
>>> lab = plan_lab(Topology.load("three_tier"), machine_cores=2)
>>> [(h.name, h.address, h.quota_us, h.period_us) for h in lab.hosts]
[('device-0', '198.18.1.1', 1000, 10500), ('gateway-0', '198.18.2.1', 9523, 10000), ('edge-0', '198.18.3.1', 9523, 10000)]
>>> round(lab.cpu_scale, 4)     # 2 cores / (0.1 + 1.0 + min(4.0, 1)) cores asked
0.9524
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import asdict, dataclass, field

from partition.topology import Topology

from ..errors import LabError
from .groups import choose_counts, default_max_hosts, groups

__all__ = ["LinkShape", "LabHost", "LabPlan", "plan_lab", "period_for", "burst_bytes", "default_max_hosts", "span", "HOSTS_LIMIT"]

PERIOD_US = 100_000  # the longest CFS period a quota is a share of
MIN_PERIOD_US = 10_000  # the shortest: a quota is a budget per period, so a short period makes a slow CPU, not a pause
MIN_QUOTA_US = 1_000  # the kernel refuses a quota under 1 ms
QUEUE_MS = 50  # how long a packet may wait in a tbf before it is dropped
HOSTS_LIMIT = 250  # addresses: at most 254 hosts per tier; a Ray node per host makes far fewer sensible
_PREFIX = re.compile(r"[a-z][a-z0-9-]{0,7}")


@dataclass(frozen=True)
class LinkShape:
    """How one host's uplink pair is shaped, both directions alike."""

    rate_mbps: float
    burst_bytes: int
    queue_ms: int
    latency_ms: float  # one way, netem only
    jitter_ms: float
    loss: float  # 0..1, netem only

    def tbf_args(self) -> list[str]:
        """``tc qdisc add dev X root`` + these: ``tbf rate 50000kbit burst 62500 latency 50ms``."""
        return ["tbf", "rate", f"{round(self.rate_mbps * 1000)}kbit", "burst", str(self.burst_bytes), "latency", f"{self.queue_ms}ms"]

    def netem_args(self) -> list[str]:
        """netem's part, for a kernel that has it: ``netem delay 5ms 2ms loss 0.1%``."""
        args = ["netem", "delay", f"{self.latency_ms:g}ms"]
        if self.jitter_ms:
            args.append(f"{self.jitter_ms:g}ms")
        if self.loss:
            args += ["loss", f"{self.loss * 100:g}%"]
        return args


@dataclass(frozen=True)
class LabHost:
    """One namespace of the lab: its nodes, address, parent, veth pair, cgroup and quota."""

    name: str  # the node's name, or "<tier>-g<k>" for a group
    tier: str
    nodes: tuple[str, ...]
    address: str
    parent: str | None  # the parent host; None: a sink-tier host, linked to the lab bridge
    netns: str
    uplink: str  # the pair's end inside this host
    downlink: str  # the other end: in the parent host, or on the bridge in the root namespace
    cgroup: str  # relative to the cpu controller's root, e.g. "tp-lab/device-0": the stages' cgroup, under the quota
    cores: float  # the quota in cores, after scaling
    quota_us: int  # per period_us
    period_us: int
    shape: LinkShape | None  # None: the unshaped link of a sink host to the root namespace


@dataclass(frozen=True)
class LabPlan:
    """Everything ``lab up`` makes, as plain data: print it, save it, test it."""

    topology: str
    prefix: str
    network: str
    root_address: str
    bridge: str
    cgroup_root: str
    daemons_cgroup: str  # sshd, Ray's daemons and idle workers of every host: no quota (see build.py)
    machine_cores: float
    cores_per_speed: float
    demand_cores: float  # what the nodes ask for before scaling
    cpu_scale: float
    max_hosts: int
    hosts: tuple[LabHost, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def grouped(self) -> bool:
        return any(len(h.nodes) > 1 for h in self.hosts)

    def host(self, name: str) -> LabHost:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def host_of(self, node: str) -> LabHost:
        """The host that holds a topology node."""
        for h in self.hosts:
            if node in h.nodes:
                return h
        raise KeyError(node)

    def groups(self) -> dict[str, list[str]]:
        return {h.name: list(h.nodes) for h in self.hosts}

    def children(self, name: str | None) -> list[LabHost]:
        """The hosts whose parent is ``name`` (None: the sink hosts, children of the root namespace)."""
        return [h for h in self.hosts if h.parent == name]

    def below(self, name: str) -> list[LabHost]:
        """Every host under ``name``, children first."""
        out, todo = [], self.children(name)
        while todo:
            out += todo
            todo = [c for h in todo for c in self.children(h.name)]
        return out

    def routes(self, name: str | None) -> list[tuple[str, str, str | None]]:
        """The ``(destination, device, via)`` routes of a host (None: of the root namespace).

        A host reaches its parent and, by default, everything else through its uplink; each host
        below it through the pair of the child it hangs under. A sink host knows the root namespace
        and every other sink host (and what hangs under them) on the bridge.
        """
        routes: list[tuple[str, str, str | None]] = []
        me = self.host(name) if name else None
        for child in self.children(name):
            dev = child.downlink if me else self.bridge
            routes.append((f"{child.address}/32", dev, None))
            routes += [(f"{h.address}/32", dev, child.address) for h in self.below(child.name)]
        if me is None:
            return routes
        if me.parent is not None:
            routes.append((f"{self.host(me.parent).address}/32", me.uplink, None))
            routes.append(("default", me.uplink, self.host(me.parent).address))
            return routes
        routes.append((f"{self.root_address}/32", me.uplink, None))
        for other in self.children(None):
            if other.name != name:
                routes.append((f"{other.address}/32", me.uplink, None))
                routes += [(f"{h.address}/32", me.uplink, other.address) for h in self.below(other.name)]
        return routes

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LabPlan:
        # a lab made before quotas had periods of their own and daemons a cgroup (its `lab down` must still work)
        old = {"period_us": PERIOD_US}
        hosts = tuple(
            LabHost(**{**old, **h, "nodes": tuple(h["nodes"]), "shape": LinkShape(**h["shape"]) if h["shape"] else None})
            for h in d["hosts"]
        )
        daemons = d.get("daemons_cgroup", f"{d['cgroup_root']}/daemons")
        return cls(**{**d, "hosts": hosts, "notes": tuple(d.get("notes", ())), "daemons_cgroup": daemons})


def plan_lab(
    topo: Topology,
    machine_cores: float,
    max_hosts: int | None = None,
    cores_per_speed: float = 1.0,
    prefix: str = "tp-",
    network: str = "198.18.0.0/16",
) -> LabPlan:
    """The hosts, addresses, links and CPU quotas of a lab for ``topo`` on a machine with ``machine_cores``.

    Args:
        topo: the topology; its path (source tier to sink) gets hosts.
        machine_cores: cores the quotas may add up to.
        max_hosts: at most this many hosts (default: :func:`default_max_hosts`); more nodes are grouped.
        cores_per_speed: cores of this machine a node of speed 1.0 gets before scaling.
        prefix: of the namespace, link and cgroup names (``tp-device-0``, ``tp-0u``, ``tp-lab``).
        network: a /20 to /16 inside 198.18.0.0/15 (a /20 holds 14 tiers; labs side by side take different ones).

    Returns:
        A :class:`LabPlan`: plain data, nothing made.

    Raises:
        LabError: a tier without ``speed``, too few hosts allowed for the tiers, a bad prefix or network.
    """
    where = topo.source_file or topo.name
    max_hosts = max_hosts or default_max_hosts(machine_cores)
    path = topo.path
    if not _PREFIX.fullmatch(prefix):
        raise LabError(f"lab prefix {prefix!r}: use 1-8 lower-case letters, digits or '-', starting with a letter (e.g. 'tp-')")
    net = ipaddress.ip_network(network)
    if not net.subnet_of(ipaddress.ip_network("198.18.0.0/15")) or net.prefixlen > 20:
        raise LabError(f"lab network {network}: use a /20 to /15 inside 198.18.0.0/15, the range reserved for benchmarking")
    tiers_room = min(254, 2 ** (24 - max(net.prefixlen, 16)) - 2)  # 198.18.T.x: T from 1, below the last /24
    if len(path) > tiers_room:
        raise LabError(f"{where}: {len(path)} tiers; a lab on {network} addresses at most {tiers_room}: give a wider --network")
    if not len(path) <= max_hosts <= HOSTS_LIMIT:
        raise LabError(f"--max-hosts {max_hosts}: give from {len(path)} (one host per tier of {where}) to {HOSTS_LIMIT}")
    for i, tier in enumerate(path):
        if tier.speed is None:
            raise LabError(
                f"{where}: tiers[{i}] {tier.name!r} gives gflops, not speed; a lab sets CPU quotas from speed "
                "(relative to this machine): add 'speed:' to the tier"
            )
    layers = groups(topo, choose_counts(topo, max_hosts))[::-1]  # source tier first

    def ask(tier) -> float:  # cores a node of the tier can use: one thread, at most one core
        return min(tier.speed * cores_per_speed, 1.0)

    demand = sum(ask(t) * t.nodes for t in path)
    scale = min(1.0, machine_cores / demand)
    base = int(net.network_address)
    hosts: list[LabHost] = []
    names: list[list[str]] = []
    notes: list[str] = []
    clamped = []
    index = 0
    for t, (tier, layer) in enumerate(zip(path, layers)):
        grouped = len(layer) < tier.nodes
        names.append([(f"{tier.name}-g{k}" if grouped else group[0]) for k, (group, _) in enumerate(layer)])
        link = topo.links[t] if t < len(path) - 1 else None
        for k, (group, _parent) in enumerate(layer):
            cores = ask(tier) * len(group) * scale
            period = period_for(cores)
            quota = math.floor(cores * period + 1e-6)  # rounded down: the quotas never add up to more than the cores
            if quota < MIN_QUOTA_US:
                clamped.append(names[t][k])
                quota = MIN_QUOTA_US
            shape = None
            if link is not None:
                rate = link.bandwidth_mbps * len(group)
                shape = LinkShape(rate, burst_bytes(rate), QUEUE_MS, link.latency_ms, link.jitter_ms, link.loss)
            hosts.append(
                LabHost(
                    name=names[t][k],
                    tier=tier.name,
                    nodes=tuple(group),
                    address=str(ipaddress.ip_address(base + (t + 1) * 256 + k + 1)),
                    parent=None,  # set below, once the tier above is named
                    netns=f"{prefix}{names[t][k]}",
                    uplink=f"{prefix}{index}u",
                    downlink=f"{prefix}{index}d",
                    cgroup=f"{prefix}lab/{names[t][k]}",
                    cores=quota / period,
                    quota_us=quota,
                    period_us=period,
                    shape=shape,
                )
            )
            index += 1
    parent_of = {}
    for t, layer in enumerate(layers[:-1]):
        for k, (_, p) in enumerate(layer):
            parent_of[names[t][k]] = names[t + 1][p]
    hosts = [LabHost(**{**h.__dict__, "parent": parent_of.get(h.name)}) for h in hosts]
    total = sum(t.nodes for t in path)
    if len(hosts) < total:
        notes.append(
            f"{total} nodes on the path of {topo.name} are more than --max-hosts {max_hosts}: "
            f"{len(hosts)} hosts, nodes grouped per tier under one parent each: "
            + "; ".join(f"{h.name} = {span(h.nodes)}" for h in hosts if len(h.nodes) > 1)
            + ". A grouped host's link carries its nodes' bandwidths added up and its quota their cores"
        )
    if scale < 1:
        notes.append(
            f"the nodes ask for {demand:g} cores and this machine has {machine_cores:g}: every quota scaled by "
            f"cpu_scale {scale:.4f} (a node of speed s gets min(s x {cores_per_speed:g}, 1) x {scale:.4f} cores)"
        )
    if clamped:
        notes.append(
            f"{', '.join(clamped)}: quota raised to the kernel's minimum of {MIN_QUOTA_US} us per {PERIOD_US} us (faster than asked)"
        )
    over = [h.name for h in hosts if h.cores / len(h.nodes) > 1]
    if over:
        notes.append(f"{', '.join(over)}: more than one core per node; a stage running one thread uses at most one of them")
    if topo.tiers[len(path) :]:
        notes.append(f"tiers above the sink ({', '.join(t.name for t in topo.tiers[len(path) :])}) get no hosts")
    root = str(ipaddress.ip_address(base + 1))
    return LabPlan(
        topology=topo.name,
        prefix=prefix,
        network=str(net),
        root_address=root,
        bridge=f"{prefix}br",
        cgroup_root=f"{prefix}lab",
        daemons_cgroup=f"{prefix}lab/daemons",
        machine_cores=machine_cores,
        cores_per_speed=cores_per_speed,
        demand_cores=demand,
        cpu_scale=scale,
        max_hosts=max_hosts,
        hosts=tuple(hosts),
        notes=tuple(notes),
    )


def burst_bytes(rate_mbps: float) -> int:
    """A tbf's bucket: 10 ms of the rate, at least 32 KiB (a few segments); a short burst keeps the rate exact."""
    return max(32 * 1024, math.ceil(rate_mbps * 1e6 / 8 / 100))


def period_for(cores: float) -> int:
    """The CFS period of a quota of ``cores``: the shortest from ``MIN_PERIOD_US`` that lets the
    quota reach the kernel's minimum, at most ``PERIOD_US``.

    A quota is a budget per period, not a speed: a stage shorter than its budget runs at full speed
    and then the cgroup waits. The shorter the period, the more a stage of a few milliseconds sees
    the slow CPU it is meant to see.

    >>> period_for(1.5), period_for(0.05), period_for(0.0039)
    (10000, 20000, 100000)
    """
    return int(min(PERIOD_US, max(MIN_PERIOD_US, math.ceil(MIN_QUOTA_US / max(cores, 1e-9)))))


def span(nodes: tuple[str, ...]) -> str:
    """``device-0..3`` for consecutive nodes of one tier, else the names."""
    if len(nodes) == 1:
        return nodes[0]
    tier = nodes[0].rsplit("-", 1)[0]
    idx = [int(n.rsplit("-", 1)[1]) for n in nodes]
    if idx == list(range(idx[0], idx[0] + len(idx))):
        return f"{tier}-{idx[0]}..{idx[-1]}"
    return ",".join(nodes)
