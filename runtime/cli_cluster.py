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
    up.add_argument("--tls", action="store_true", help="encrypt the cluster: a CA and a certificate per node, Ray started with mutual TLS")
    up.add_argument(
        "--install",
        metavar="WHEEL",
        help="pip-install this tierpipe wheel, with the head's torch and Ray pinned, on every host whose versions differ; then check again",
    )
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
    down.add_argument("--port", type=port, default=None, help="--local: the cluster on this port; else the head's port (default 6379)")
    down.add_argument("--dry-run", action="store_true")
    down.add_argument("--head", help="the node `up --head` named (its TLS files are forgotten; default: the sink tier's first node)")
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
    from pathlib import Path

    from partition import Topology

    from . import tls
    from .cli import console
    from .cluster import ensure_token, execute, plan_up, token_path
    from .hostcheck import local_versions, plan_install

    topo = Topology.load(args.topology)
    head = args.head or topo.path[-1].node_names()[0]
    if topo.emulate:
        console.print(f"[yellow]warning:[/yellow] {emulate_warning(topo)}")
    if args.dry_run:
        bundles = {n: "<certificate>" for t in topo.path for n in t.node_names()} if args.tls else None
        steps = plan_up(topo, args.head, args.port, tls=bundles)
        if args.install:  # which hosts differ is known only once the head has answered: shown for every host
            nodes = [s.node for s in steps if s.what == "check"]
            steps += plan_install(topo.hosts, nodes, Path(args.install), local_versions(), dry_run=True)
        _print_plan(steps)
        return 0
    plan_up(topo, args.head, args.port)  # hosts and head checked before any certificate is made
    address = topo.hosts[head].address
    cluster = tls.cluster_id(address, args.port)
    bundles = None
    if not args.tls and tls.local_dir(cluster).exists():
        console.print(
            f"[yellow]note:[/yellow] {address}:{args.port} was started with --tls ({tls.local_dir(cluster)}); nodes that still run "
            "it refuse nodes started without: `tierpipe cluster down` first (which forgets it), or add --tls"
        )
    if args.tls:
        folder = tls.local_dir(cluster)
        ca = tls.authority(folder)
        bundles = {n: tls.node_bundle(ca, n, topo.hosts[n].address) for t in topo.path for n in t.node_names()}
        tls.write_driver(folder, ca, address, args.port)
    steps = plan_up(topo, args.head, args.port, token=ensure_token(), tls=bundles)
    for line in execute(steps, verify=lambda printed: _verify(printed, steps, topo, head, args.install)):
        console.print(line)
    clients = f"RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={token_path()}"
    if args.tls:
        clients += " " + " ".join(f"{k}={v}" for k, v in tls.tls_env(tls.local_dir(cluster)).items())
    console.print(f"cluster up{' with TLS' if args.tls else ''}; head {address}:{args.port}; token {token_path()} (clients: {clients})")
    return 0


def emulate_warning(topo) -> str:
    return (
        f"{topo.source_file or topo.name} says emulate: true. On real hosts a run would stretch each stage to the cost model's "
        "time on top of its real compute, and each link on top of the real link: every figure counted twice. "
        "Run on this cluster with `tierpipe run ... --emulate off` (or set emulate: false in the file)."
    )


def _verify(printed: dict[str, str], steps, topo, head: str, wheel: str | None) -> None:
    """The version check of `cluster up` (runtime.hostcheck): refuse hosts that differ from the head, or install
    the wheel on them (``--install``) and check again."""
    from pathlib import Path

    from .cli import console
    from .cluster import execute
    from .hostcheck import local_versions, plan_install

    reports, ref, diffs = _compare(printed, topo, head)
    fixable = [n for n in diffs if reports[n].python == ref.python]  # pip cannot change a host's Python
    if fixable and wheel:
        built = Path(wheel).name.split("-")[1] if Path(wheel).name.count("-") >= 2 else "?"  # name-version-...whl
        if built != ref.tierpipe:  # checked before anything is installed: the re-check would refuse the hosts anyway
            raise ClusterError(
                f"--install {Path(wheel).name} is tierpipe {built}, the head has {ref.tierpipe}: nothing was installed; "
                "build the head's version (`pip wheel --no-deps .` where the head's tierpipe comes from) or upgrade the head"
            )
        console.print(f"installing {Path(wheel).name} (torch=={ref.key('torch')}, ray=={ref.ray}) on {', '.join(fixable)}")
        execute(plan_install(topo.hosts, fixable, Path(wheel), ref))
        again: dict[str, str] = {}
        execute([s for s in steps if s.what == "check"], verify=again.update)
        _, ref, diffs = _compare(again, topo, head)
    if diffs:
        raise ClusterError(
            "these hosts differ from the head, so nothing was started:\n  "
            + "\n  ".join(diffs.values())
            + "\nEvery node must run the head's Python (major.minor), Ray, torch and tierpipe; `--install WHEEL` installs a "
            "tierpipe wheel with the head's torch and Ray (`pip wheel --no-deps -w dist .` builds one)"
        )
    here = local_versions()
    off = [f"{name} {getattr(here, name)} (head: {getattr(ref, name)})" for name in ("python", "ray") if here.key(name) != ref.key(name)]
    if off:
        console.print(
            f"[yellow]note:[/yellow] this machine has {', '.join(off)}: Ray refuses a driver of another Python or Ray, "
            f"so run the driver on the head ({head}) or a machine that matches it"
        )
    console.print(f"versions: every host has python {ref.python}, ray {ref.ray}, torch {ref.torch}, tierpipe {ref.tierpipe}")


def _compare(printed: dict[str, str], topo, head: str):
    from .hostcheck import differences, local_versions, parse_probe, reference

    reports = {node: parse_probe(node, out) for node, out in printed.items()}
    ref, whose = reference(reports[head], local_versions())
    return reports, ref, differences(reports, topo.hosts, ref, whose)


def _connect(address: str) -> None:
    import ray

    from . import tls
    from .cluster import token_path, use_token

    if token_path().exists():
        use_token()
    secure = tls.use_tls(address)
    if ray.is_initialized():
        ray.shutdown()
    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    except ConnectionError as exc:
        raise ClusterError(
            f"cannot reach the cluster at {address}: {exc}. Is it up (`tierpipe cluster up` / "
            f"`cluster local`), and does {token_path()} hold its token?"
            + (
                f" TLS: this machine presents the certificate in {tls.local_dir(tls.cluster_id(*address.rsplit(':', 1)))}."
                if secure
                else " A cluster started with `--tls` refuses a client without its certificate: copy ~/.tierpipe/tls/HEAD_PORT/ "
                "from the machine that ran `cluster up --tls`."
            )
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
    topo = Topology.load(args.topology)
    if args.dry_run:
        if topo.lab is not None:
            console.print(f"# a lab: stop every process in its cgroups and namespaces but sshd (state {topo.lab.state})")
        else:
            _print_plan(plan_down(topo))
        return 0
    if topo.lab is not None:  # the lab's hosts share this machine's processes: `ray stop` would stop every Ray here
        from pathlib import Path

        from .lab.state import LabState
        from .lab.teardown import stop_ray

        state = LabState.load(Path(topo.lab.state))
        if state is None:
            raise ClusterError(f"{args.topology}: its lab ({topo.lab.state}) is gone, and its Ray with it: nothing to stop")
        stopped = stop_ray(state)
        console.print(f"stopped the lab's Ray: {len(stopped)} process(es) on its hosts (their sshd keep running)")
    else:
        for line in execute(plan_down(topo)):
            console.print(line)
    from . import tls

    head = args.head or topo.path[-1].node_names()[0]
    tls.forget(tls.cluster_id(topo.hosts[head].address, args.port or 6379))  # its clients no longer use TLS
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
