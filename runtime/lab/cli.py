"""``tierpipe lab up|status|down``: a lab of network namespaces on this machine (Linux, root)."""

from __future__ import annotations

from rich.table import Table

from ..argtypes import positive, positive_int

__all__ = ["register"]


def register(sub) -> None:
    p = sub.add_parser("lab", help="a lab on this machine: a namespace, sshd, CPU quota and shaped link per node (root)")
    lsub = p.add_subparsers(dest="action", required=True)
    up = lsub.add_parser("up", help="make the lab a topology describes; --out writes a topology whose hosts are the lab")
    up.add_argument("topology", help="shipped name or YAML path")
    up.add_argument("--out", help="write the lab's topology here (LAB.yaml), for `tierpipe cluster up LAB.yaml`")
    up.add_argument(
        "--max-hosts", type=positive_int, help="at most this many namespaces; more nodes are grouped per tier (default: 4 per core)"
    )
    up.add_argument(
        "--cores",
        type=positive,
        help="cores the quotas may add up to (default: the cores this process may use, after its own cgroup's quota)",
    )
    up.add_argument("--cores-per-speed", type=positive, default=1.0, help="cores of this machine a node of speed 1.0 gets before scaling")
    up.add_argument("--prefix", default="tp-", help="prefix of the lab's namespace, link and cgroup names")
    up.add_argument("--network", default="198.18.0.0/16", help="the lab's addresses, inside 198.18.0.0/15")
    up.add_argument("--dry-run", action="store_true", help="print the hosts, links and quotas; make nothing (no root needed)")
    _dir_arg(up)
    up.set_defaults(func=cmd_up)
    st = lsub.add_parser("status", help="hosts, addresses, sshd, quotas, link shaping, netem; exit 1 if a host is down")
    _dir_arg(st)
    st.set_defaults(func=cmd_status)
    sh = lsub.add_parser("shape", help="change a host's uplink rate now (tc on both ends), e.g. `lab shape device-0 '10 Mbit/s'`")
    sh.add_argument("host", help="a lab host or a topology node it holds")
    sh.add_argument("rate", help="the new rate with its unit, e.g. '10 Mbit/s'")
    sh.add_argument("--upstream-only", action="store_true", help="only what the host sends (a congested uplink); default both ways")
    _dir_arg(sh)
    sh.set_defaults(func=cmd_shape)
    down = lsub.add_parser("down", help="remove every namespace, link, cgroup, process and file the lab made, and nothing else")
    down.add_argument("--purge-keys", action="store_true", help="remove the lab's ssh keys too (kept by default)")
    _dir_arg(down)
    down.set_defaults(func=cmd_down)


def _dir_arg(p) -> None:
    p.add_argument("--dir", help="the lab's state folder (default: $TIERPIPE_LAB_DIR, else ~/.tierpipe/lab)")


def _print(text: str) -> None:
    from ..cli import console

    console.print(text, markup=False, highlight=False, soft_wrap=True)


def plan_table(plan) -> Table:
    from .plan import span

    table = Table(title=f"lab for {plan.topology}: {len(plan.hosts)} hosts, cpu_scale {plan.cpu_scale:.4f}")
    for col in ("host", "nodes", "address", "namespace", "parent", "CPU quota", "uplink"):
        table.add_column(col)
    for h in plan.hosts:
        rate = f"{h.shape.rate_mbps:g} Mbit/s tbf ({h.uplink}<->{h.downlink})" if h.shape else f"bridge {plan.bridge}, unshaped"
        table.add_row(
            h.name, span(h.nodes), h.address, h.netns, h.parent or "(this machine)", f"{h.cores:.3g} cores ({h.quota_us} us)", rate
        )
    return table


def cmd_up(args) -> int:
    from partition import Topology

    from ..cli import console
    from .build import key_paths, lab_up
    from .labfile import lab_topology
    from .netns import machine_cores
    from .plan import plan_lab
    from .state import lab_dir

    topo = Topology.load(args.topology)
    cores = args.cores or machine_cores()
    plan = plan_lab(topo, cores, args.max_hosts, args.cores_per_speed, args.prefix, args.network)
    console.print(plan_table(plan))
    for note in plan.notes:
        _print(f"note: {note}")
    if args.dry_run:
        return 0
    with console.status("making the lab..."):
        state = lab_up(plan, args.dir)
    directory = lab_dir(args.dir)
    from .status import netem_line

    _print(f"cpu_scale {plan.cpu_scale:.4f}: the nodes ask for {plan.demand_cores:g} cores, the quotas share {cores:g}")
    _print(netem_line(state))
    key = key_paths(directory)["client"]
    _print(f"lab up: {len(plan.hosts)} hosts, ssh -i {key} root@ADDRESS; state {state.path}; `tierpipe lab down` removes it")
    if args.out:
        _, text = lab_topology(topo, plan, key, state.path, state.netem, state.cgroup_root)
        with open(args.out, "w") as f:
            f.write(text)
        Topology.load(args.out)  # what was written loads
        _print(f"lab topology written to {args.out}: `tierpipe cluster up {args.out}` starts Ray on the lab's hosts")
        if plan.grouped:
            _print(
                "note: nodes share hosts in this lab: `cluster up` starts one Ray node per host and places a group's "
                f"nodes together on it, under one quota; `--max-hosts {sum(len(h.nodes) for h in plan.hosts)}` gives every node a host"
            )
    return 0


def cmd_status(args) -> int:
    from ..cli import console
    from .netns import check_machine
    from .state import LabState, lab_dir
    from .status import host_status, netem_line

    check_machine("status")
    directory = lab_dir(args.dir)
    state = LabState.load(directory / "state.json")
    if state is None:
        _print(f"no lab recorded in {directory}")
        _print(netem_line(None))
        return 1
    rows = host_status(state)
    plan = state.plan
    title = f"lab for {plan.topology} ({state.path}): cgroup v{state.cgroup_version}, cpu_scale {plan.cpu_scale:.4f}"
    table = Table(title=title + ("" if state.up else " - INCOMPLETE: `lab up` did not finish"))
    for col in ("host", "tier", "nodes", "address", "namespace", "sshd", "CPU quota", "stage procs", "link"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r.host,
            r.tier,
            r.nodes,
            r.address,
            "yes" if r.netns else "MISSING",
            r.sshd,
            r.quota,
            str(r.procs),
            r.link,
            style=None if r.ok else "red",
        )
    console.print(table)
    for note in plan.notes:
        _print(f"note: {note}")
    _print(netem_line(state))
    return 0 if state.up and all(r.ok for r in rows) else 1


def cmd_down(args) -> int:
    from .teardown import lab_down

    for line in lab_down(args.dir, args.purge_keys):
        _print(line)
    return 0


def cmd_shape(args) -> int:
    from partition.units import parse_quantity

    from ..errors import LabError
    from .netns import check_machine
    from .shape import set_uplink_rate
    from .state import LabState, lab_dir

    check_machine("shape")
    try:
        mbps = parse_quantity(args.rate, "bandwidth_mbps")
    except ValueError as exc:
        raise LabError(f"lab shape: rate {args.rate!r}: {exc}") from None
    state = LabState.load(lab_dir(args.dir) / "state.json")
    if state is None:
        raise LabError(f"lab shape: no lab recorded in {lab_dir(args.dir)}; `tierpipe lab up TOPOLOGY` makes one")
    for line in set_uplink_rate(state, args.host, mbps, args.upstream_only):
        _print(line)
    _print(f"{args.host}: uplink now {mbps:g} Mbit/s " + ("upstream" if args.upstream_only else "both ways"))
    return 0
