"""A driver joining a cluster: the cluster's token, and on a lab the head host's network namespace."""

from __future__ import annotations

import logging

from partition.topology import Topology

__all__ = ["connect_driver"]


def connect_driver(address: str, topology: Topology | None = None, **init_kwargs) -> None:
    """``ray.init(address)`` as a client of a tierpipe cluster, unless Ray is already up in this process.

    The token from ``tierpipe cluster up`` is used when there is one, and the client certificate of a
    cluster started with ``--tls`` (found by ``address``); a driver of a lab topology
    first joins the lab's head host (``lab/driver.py``), so the stage actors can reach it.
    """
    import ray

    if ray.is_initialized():
        return
    from .cluster import token_path, use_token

    if topology is not None and topology.lab is not None:
        from .lab.driver import enter_head_namespace

        enter_head_namespace(topology)
    if token_path().exists():  # a cluster from `tierpipe cluster up/local`: use its token
        use_token()
    from .tls import use_tls

    use_tls(address)  # a cluster from `cluster up --tls`: present its client certificate
    ray.init(address=address, logging_level=init_kwargs.pop("logging_level", logging.WARNING), **init_kwargs)
