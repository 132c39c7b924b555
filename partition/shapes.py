"""Values derived from shapes alone are recomputed by each stage that needs them, never sent.

A graph exported with a dynamic batch dimension reads the batch size once
(``sym_size_int = aten.sym_size.int(input_ids, 0)``) and derives ints and small tensors from
it (``arange(sym_size_int)``, ``view(h, [sym_size_int, 16, 2, 16])``). Sent over a link, such a
value describes the frame it came from: a stage that batches frames at fan-in would receive
``[1]`` where the batch holds four. So these nodes are not ops of the partitioned graph:

- :func:`shape_only_nodes` finds them: every ``sym_size`` node, and every node all of whose
  inputs are such nodes (``arange(sym_size_int)``, ``mul(sym_size_int, 16)``).
- :func:`local_size` reads the same size from a tensor the stage already holds (any tensor
  whose shape carries the same symbol), so the stage computes the batch it actually runs.
"""

from __future__ import annotations

import torch
import torch.fx as fx

__all__ = ["SYM_SIZE", "shape_only_nodes", "local_size"]

SYM_SIZE = torch.ops.aten.sym_size.int


def shape_only_nodes(gm: fx.GraphModule) -> set[str]:
    """Names of the nodes whose values follow from tensor shapes alone (none outside export graphs)."""
    out: set[str] = set()
    results = _outputs(gm)
    for n in gm.graph.nodes:
        if n.op != "call_function" or n.name in results:
            continue
        if n.target is SYM_SIZE:
            out.add(n.name)
            continue
        inputs = n.all_input_nodes
        if inputs and all(a.name in out for a in inputs):
            out.add(n.name)
    return out


def _outputs(gm: fx.GraphModule) -> set[str]:
    out = next(n for n in gm.graph.nodes if n.op == "output")
    return {a.name for a in torch.utils._pytree.tree_leaves(out.args[0]) if isinstance(a, fx.Node)}


def local_size(graph: fx.Graph, size_node: fx.Node, held: list[fx.Node]) -> fx.Node | None:
    """A new ``sym_size`` node in ``graph`` reading ``size_node``'s size from one of ``held``; None if none has it."""
    value = size_node.meta.get("val")
    if not isinstance(value, torch.SymInt):
        return None
    expr = value.node.expr
    for node in held:
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            continue
        for d, dim in enumerate(val.shape):
            if isinstance(dim, torch.SymInt) and dim.node.expr == expr:
                new = graph.call_function(SYM_SIZE, (node, d))
                new.meta = dict(size_node.meta)
                return new
    return None
