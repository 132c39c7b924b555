"""Where each stage actor runs: Ray options from the topology and the labels of the cluster's nodes."""

from __future__ import annotations

from partition.topology import Topology

from .cluster import HOST_LABEL, NODE_LABEL, TIER_LABEL
from .errors import PipelineError

__all__ = ["actor_options", "labelled_nodes", "gpu_share", "NODE_LABEL", "TIER_LABEL"]


def labelled_nodes() -> list[dict]:
    """The labels of every alive node of the connected cluster."""
    import ray

    return [n.get("Labels", {}) for n in ray.nodes() if n.get("Alive")]


def gpu_share(topology: Topology, tier: str) -> float:
    """GPUs for one actor of a cuda tier: Ray hides the GPUs from actors that ask for none."""
    import ray

    spec = next(t for t in topology.path if t.name == tier)
    gpus = ray.cluster_resources().get("GPU", 0.0)
    if spec.accelerator != "cuda" or gpus <= 0:
        return 0.0
    cuda_actors = sum(t.nodes for t in topology.path if t.accelerator == "cuda")
    return min(1.0, gpus / cuda_actors)


def actor_options(topology: Topology, address: str | None, node: str, tier: str, labelled: list[dict]) -> dict:
    """``.options(...)`` for the actor of ``node``: on the node labelled for it (or its tier) in a cluster;
    anywhere on a local Ray (``address`` None).

    Raises:
        PipelineError: no alive node carries the node's or the tier's label; says how to start one.
    """
    opts: dict = {"num_cpus": 0}
    gpus = gpu_share(topology, tier)
    if gpus:
        opts["num_gpus"] = gpus
    if address is None:
        return opts  # the local default: everything on this machine
    host = topology.hosts.get(node) if topology.hosts else None
    if any(lab.get(NODE_LABEL) == node for lab in labelled):
        opts["label_selector"] = {NODE_LABEL: node}
    elif host is not None and any(lab.get(HOST_LABEL) == host.address and lab.get(TIER_LABEL) == tier for lab in labelled):
        opts["label_selector"] = {TIER_LABEL: tier, HOST_LABEL: host.address}  # a host that holds several nodes of the tier
    elif any(lab.get(TIER_LABEL) == tier for lab in labelled):
        opts["label_selector"] = {TIER_LABEL: tier}
    else:
        have = sorted({f"{k}={v}" for lab in labelled for k, v in lab.items() if not k.startswith("ray.io")})
        raise PipelineError(
            f"no Ray node of tier {tier!r} for {node}: no alive node has label {NODE_LABEL}={node} "
            f"or {TIER_LABEL}={tier} (labels seen: {have or 'none'}). Start that tier's machines "
            f"with `tierpipe cluster up` or `ray start --labels {TIER_LABEL}={tier},{NODE_LABEL}={node}`"
        )
    return opts
