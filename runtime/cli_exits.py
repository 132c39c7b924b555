"""``tierpipe exits attach``: attach early-exit heads to a model, train them by distillation, calibrate them."""

from __future__ import annotations

from pathlib import Path

from partition.errors import TierpipeError

from .argtypes import positive_int


def register(sub) -> None:
    p = sub.add_parser("exits", help="early exits: attach heads to a model and calibrate them")
    esub = p.add_subparsers(dest="action", required=True)
    a = esub.add_parser("attach", help="attach heads at points of MODEL and train them by distillation on --data (backbone frozen)")
    a.add_argument("model", help="zoo name or package.module:function")
    a.add_argument("--data", required=True, help="calibration frames: a .npy or .pt array [N, ...] of model inputs")
    a.add_argument("--at", action="append", required=True, metavar="POINT", help="a module path or node to attach a head to (repeat)")
    a.add_argument("--rule", default="max_softmax", choices=["max_softmax", "predicted_error"], help="classification or regression")
    a.add_argument("--steps", type=positive_int, default=300, help="optimiser steps per head (default 300)")
    a.add_argument("--out", default="exits.pt", help="where to write the heads and calibration (default exits.pt)")
    a.set_defaults(func=cmd_attach)


def load_frames(path: str):
    """A tensor ``[N, ...]`` from a .npy or .pt file."""
    import numpy as np
    import torch

    p = Path(path)
    if not p.exists():
        raise TierpipeError(f"--data {path}: no such file; give a .npy or .pt array of model inputs [N, ...]")
    if p.suffix == ".npy":
        return torch.from_numpy(np.load(p, allow_pickle=False))
    if p.suffix == ".pt":
        data = torch.load(p, map_location="cpu", weights_only=True)
        if isinstance(data, torch.Tensor):
            return data
    raise TierpipeError(f"--data {path}: expected a .npy array or a .pt tensor of model inputs [N, ...]")


def cmd_attach(args) -> int:
    import time

    from rich.table import Table

    from partition.exit_calib import calibrate
    from partition.exit_file import save_exits
    from partition.exit_train import attach
    from partition.zoo import get_model

    from .cli import console

    model, example = get_model(args.model)
    frames = load_frames(args.data)
    if example and tuple(frames.shape[1:]) != tuple(example[0].shape[1:]):
        raise TierpipeError(
            f"--data {args.data}: frames of shape {list(frames.shape[1:])}, {args.model} takes {list(example[0].shape[1:])}; "
            "give an array [N, ...] of its inputs"
        )
    start = time.perf_counter()
    with console.status(f"training {len(args.at)} head(s) on {frames.shape[0]} frames..."):
        em = attach(model, args.at, frames, rule=args.rule, steps=args.steps)
        cal = calibrate(em, frames)
    table = Table(title=f"exits of {args.model} on {frames.shape[0]} calibration frames ({time.perf_counter() - start:.1f} s)")
    for col in ("exit", "node", "threshold", "exit rate", cal.kind):
        table.add_column(col, justify="left" if col in ("exit", "node") else "right")
    nodes = {e.name: e.node for e in em.exits}
    for row in cal.table():
        table.add_row(row["exit"], nodes[row["exit"]], f"{row['threshold']:.4g}", f"{row['rate']:.1%}", f"{row[cal.kind]:.4g}")
    console.print(table)
    save_exits(em, cal, args.out)
    console.print(f"heads and calibration written to {args.out}; use them with `tierpipe partition {args.model} --exits {args.out}`")
    return 0
