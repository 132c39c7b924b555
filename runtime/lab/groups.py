"""How a topology's nodes are grouped onto lab hosts when there are more nodes than hosts allowed:
per tier, under one parent host each (see ``plan.py``)."""

from __future__ import annotations

from partition.topology import Topology

__all__ = ["default_max_hosts", "choose_counts", "groups"]


def default_max_hosts(machine_cores: float) -> int:
    """Four hosts per core, at least 4: each host will run a Ray node (~0.3 GB, a share of a core)."""
    return max(4, min(64, int(4 * machine_cores)))


def _split(items: list[str], k: int) -> list[list[str]]:
    """``items`` in ``k`` contiguous chunks whose sizes differ by at most one."""
    size, extra = divmod(len(items), k)
    out, start = [], 0
    for i in range(k):
        end = start + size + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out


def _share(wanted: int, sizes: list[int]) -> list[int]:
    """``wanted`` hosts over parents with ``sizes`` children: at least one each, at most ``size``,
    the next one always to the parent with the most children per host."""
    ks = [1] * len(sizes)
    for _ in range(max(0, wanted - len(sizes))):
        free = [i for i in range(len(sizes)) if ks[i] < sizes[i]]
        if not free:
            break
        best = max(free, key=lambda i: (sizes[i] / ks[i], -i))
        ks[best] += 1
    return ks


def groups(topo: Topology, counts: list[int]) -> list[list[tuple[list[str], int | None]]]:
    """Per tier of the path (sink first): the node groups and the index of their parent group in the
    tier above, for ``counts[t]`` hosts wanted on tier ``t``."""
    path = topo.path
    top = path[-1].node_names()
    layers = [[(chunk, None) for chunk in _split(top, min(counts[-1], len(top)))]]
    for t in range(len(path) - 2, -1, -1):
        parents = layers[-1]
        children = [[c for node in group for c in topo.children.get(node, [])] for group, _ in parents]
        ks = _share(counts[t], [len(c) for c in children])
        layers.append([(chunk, p) for p, (kids, k) in enumerate(zip(children, ks)) for chunk in _split(kids, k)])
    return layers


def choose_counts(topo: Topology, max_hosts: int) -> list[int]:
    """Hosts per tier: one per node when they fit; else start from one per tier and give the next
    host, while the total fits, to the tier with the most nodes per host (ties: the lower tier)."""
    sizes = [t.nodes for t in topo.path]
    if sum(sizes) <= max_hosts:
        return sizes
    counts = [1] * len(sizes)
    while True:
        order = sorted(range(len(sizes)), key=lambda t: (-sizes[t] / counts[t], t))
        for t in order:
            if counts[t] >= sizes[t]:
                continue
            trial = counts[:t] + [counts[t] + 1] + counts[t + 1 :]
            if sum(len(layer) for layer in groups(topo, trial)) <= max_hosts:
                counts = trial
                break
        else:
            return counts
