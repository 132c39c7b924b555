"""``tierpipe lab shape HOST RATE``: change a lab link's rate while everything runs (a real change
of the tbf on both ends of the host's uplink, as a congested or degraded link would be)."""

from __future__ import annotations

import dataclasses

from ..errors import LabError
from .netns import run
from .plan import burst_bytes
from .state import LabState

__all__ = ["set_uplink_rate"]


def set_uplink_rate(state: LabState, host: str, rate_mbps: float, upstream_only: bool = False) -> list[str]:
    """Set the tbf rate of ``host``'s uplink (both ends; ``upstream_only``: the host's end, what it sends) to
    ``rate_mbps``; returns the commands run.

    ``host`` is a lab host or a topology node it holds. Raises LabError for an unknown host, a sink
    host (its link to this machine is not shaped) or a rate that is not positive.
    """
    plan = state.plan
    try:
        h = plan.host(host)
    except KeyError:
        try:
            h = plan.host_of(host)
        except KeyError:
            raise LabError(f"lab shape: no host or node {host!r} in the lab; hosts are {[x.name for x in plan.hosts]}") from None
    if h.shape is None:
        raise LabError(f"lab shape: {h.name} is on the sink tier; its link to this machine is not shaped. Shape a host below it")
    if not rate_mbps > 0:
        raise LabError(f"lab shape: rate {rate_mbps} Mbit/s; give a positive rate, e.g. '10 Mbit/s'")
    shape = dataclasses.replace(h.shape, rate_mbps=rate_mbps, burst_bytes=burst_bytes(rate_mbps))
    parent = plan.host(h.parent)
    where = ["parent", "1:1", "handle", "10:"] if state.netem else ["root"]
    done = []
    ends = ((h.uplink, h.netns),) if upstream_only else ((h.uplink, h.netns), (h.downlink, parent.netns))
    for dev, ns in ends:
        argv = ["tc", "-n", ns, "qdisc", "change", "dev", dev, *where, *shape.tbf_args()]
        run(argv, fix="is the lab up? `tierpipe lab status`")
        done.append(" ".join(argv))
    return done
