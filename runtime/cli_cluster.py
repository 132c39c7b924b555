"""``tierpipe cluster up|status|down|local``."""

from __future__ import annotations

from rich.table import Table

from .argtypes import port
from .errors import ClusterError


def register(sub) -> None:
    p = sub.add_parser("cluster", help="launch, inspect and stop the Ray cluster a topology describes")
    csub = p.add_subparsers(dest="action", required=True)
    up = csub.add_parser("up", help="start Ray on every host over ssh (head on the sink tier), token auth on")
    up.add_argument("topology")
    up.add_argument("--head", help="node to run the head on (default: the sink tier's first node)")
    up.add_argument("--port", type=port, default=6379)
    up.add_argument("--dry-run", action="store_true", help="print every command, host by host, and run none")
    up.set_defaults(func=cmd_up)
    st = csub.add_parser("status", help="which tier nodes are up, their labels and resources; exit 1 if any is missing")
    st.add_argument("topology")
    st.add_argument("--address", help="default: the head host from the topology, else 'auto'")
    st.add_argument("--port", type=port, default=6379)
    st.set_defaults(func=cmd_status)
    down = csub.add_parser("down", help="stop Ray on every host (or --local: the cluster `cluster local` started)")
    down.add_argument("topology", nargs="?")
    down.add_argument(
        "--local", action="store_true", help="stop only the processes `cluster local` started (all its clusters, or the one on --port)"
    )
    down.add_argument("--port", type=port, default=None)
    down.add_argument("--dry-run", action="store_true")
    down.set_defaults(func=cmd_down)
    loc = csub.add_parser("local", help="a real multi-node Ray cluster on this machine, labelled as in production")
    loc.add_argument("topology")
    loc.add_argument("--port", type=port, default=6379)
    loc.set_defaults(func=cmd_local)


def plan_lines(steps) -> list[str]:
    """Every command, host by host (checks run on all hosts first when executed: nothing starts half-way)."""
    by_node: dict[str, list] = {}
    for step in steps:
        by_node.setdefault(step.node, []).append(step)
    lines = []
    for node, mine in by_node.items():
        host = mine[0].host
        lines.append(f"# {node} @ {host.address if host else 'this machine'}")
        lines += [s.display() for s in mine]
    return lines


def _print_plan(steps) -> None:
    from .cli import console

    for line in plan_lines(steps):
        console.print(line, highlight=False, soft_wrap=True, markup=False)


def cmd_up(args) -> int:
    from partition import Topology

    from .cli import console
    from .cluster import ensure_token, execute, plan_up, token_path

    topo = Topology.load(args.topology)
    if args.dry_run:
        _print_plan(plan_up(topo, args.head, args.port))
        return 0
    steps = plan_up(topo, args.head, args.port, token=ensure_token())
    for line in execute(steps):
        console.print(line)
    head = args.head or topo.path[-1].node_names()[0]
    console.print(
        f"cluster up; head {topo.hosts[head].address}:{args.port}; token {token_path()} "
        f"(clients: RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={token_path()})"
    )
    return 0


def _connect(address: str) -> None:
    import ray

    from .cluster import token_path, use_token

    if token_path().exists():
        use_token()
    if ray.is_initialized():
        ray.shutdown()
    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    except ConnectionError as exc:
        raise ClusterError(
            f"cannot reach the cluster at {address}: {exc}. Is it up (`tierpipe cluster up` / "
            f"`cluster local`), and does {token_path()} hold its token?"
        ) from None


def cmd_status(args) -> int:
    import ray

    from partition import Topology

    from .cli import console
    from .cluster import cluster_status

    topo = Topology.load(args.topology)
    head = topo.path[-1].node_names()[0]
    address = args.address or (f"{topo.hosts[head].address}:{args.port}" if head in topo.hosts else "auto")
    _connect(address)
    try:
        rows, ok = cluster_status(topo, ray.nodes())
    finally:
        ray.shutdown()
    table = Table(title=f"cluster for {topo.name} at {address}")
    for col in ("node", "tier", "state", "labels", "resources"):
        table.add_column(col)
    for r in rows:
        style = None if r["state"] == "up" else "red"
        table.add_row(r["node"], r["tier"], r["state"], r["labels"], r["resources"], style=style)
    console.print(table)
    missing = [r["node"] for r in rows if r["state"] != "up"]
    if missing:
        console.print(f"[red]{len(missing)} node(s) missing or mislabelled:[/red] {missing}")
    return 0 if ok else 1


def cmd_down(args) -> int:
    from partition import Topology

    from .cli import console
    from .cluster import execute, plan_down

    if args.local:
        from .cluster import token_path
        from .sessions import stop_recorded

        lines = stop_recorded(token_path().parent, args.port)
        for line in lines:
            console.print(line)
        if not lines:
            where = f"on port {args.port}" if args.port is not None else "at all"
            console.print(
                f"no cluster started by `tierpipe cluster local` is recorded {where} "
                f"(in {token_path().parent}); nothing stopped. `ray stop` stops every Ray on this machine"
            )
        return 0
    if not args.topology:
        raise ClusterError("cluster down needs a TOPOLOGY (or --local for the cluster on this machine)")
    steps = plan_down(Topology.load(args.topology))
    if args.dry_run:
        _print_plan(steps)
        return 0
    for line in execute(steps):
        console.print(line)
    return 0


def cmd_local(args) -> int:
    from partition import Topology

    from .cli import console
    from .cluster import ensure_token, execute, plan_local, token_path

    topo = Topology.load(args.topology)
    ensure_token()
    for line in execute(plan_local(topo, args.port)):
        console.print(line)
    console.print(
        f"local cluster up at 127.0.0.1:{args.port} (token {token_path()}); "
        f"run with `tierpipe run MODEL --topology {args.topology} --address auto`; "
        "stop with `tierpipe cluster down --local`"
    )
    return 0
