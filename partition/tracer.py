"""Turn an unmodified ``nn.Module`` into a :class:`Graph` of ops with measured costs.

torch.fx traces first; torch.export is the fallback when fx cannot (for example
Python control flow on a shape). FLOPs come from ``torch.utils.flop_counter``;
host latency is the median of repeated runs, warm-up excluded.
"""

from __future__ import annotations

import logging
import time
import traceback
from pathlib import Path

import torch
import torch.fx as fx
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .errors import CaptureError
from .graph import Graph, Node, TensorSpec
from .shapes import shape_only_nodes
from .timing import time_nodes

__all__ = ["capture", "trace"]

log = logging.getLogger(__name__)
_TORCH_DIR = str(Path(torch.__file__).parent)
_OWN_DIR = str(Path(__file__).parent)


class _PathTracer(fx.Tracer):
    """An fx tracer that remembers which module it was inside when tracing failed."""

    def __init__(self) -> None:
        super().__init__()
        self._stack: list[str] = []
        self.failed_in: str | None = None

    def call_module(self, m, forward, args, kwargs):
        self._stack.append(self.path_of_module(m) if m is not self.root else "")
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:
                self.failed_in = self._stack[-1]
            raise
        finally:
            self._stack.pop()


def _user_frame(exc: BaseException) -> str:
    """The innermost frame of the traceback outside torch and tierpipe: the user's construct that failed."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith((_TORCH_DIR, _OWN_DIR))]
    if not frames:
        return "an op inside torch"
    f = frames[-1]
    return f"{f.filename}:{f.lineno} `{(f.line or '').strip()}`"


def _without_guards(gm: fx.GraphModule) -> fx.GraphModule:
    """Drop the input-guard call torch.export inserts (``_guards_fn``): it checks shapes we check at
    every stage boundary anyway, and it holds an object that cannot be pickled, so a stage holding it
    could not be shipped to an actor."""
    for n in list(gm.graph.nodes):
        if n.op == "call_module" and str(n.target).startswith("_guards_fn") and not n.users:
            gm.graph.erase_node(n)
    for name in [name for name, _ in gm.named_children() if name.startswith("_guards_fn")]:
        delattr(gm, name)
    gm.recompile()
    return gm


# names torch.fx's GraphModule uses itself: a top-level submodule of one of these names cannot be copied onto it
_RESERVED = frozenset(dir(fx.GraphModule)) | {"meta", "graph", "code"}


def _plain_leaf(value) -> bool:
    return value is None or isinstance(value, (torch.Tensor, int, float, bool, str))


class _Adapted(nn.Module):
    """The user's model as the child ``model`` of a plain root: its top-level names cannot clash with the
    GraphModule's own attributes, and (``drop``) outputs that are not tensors (caches) come back as ``None``."""

    def __init__(self, model: nn.Module, drop: bool) -> None:
        super().__init__()
        self.model = model
        self.drop = drop

    def forward(self, *args):
        out = self.model(*args)
        if not self.drop:
            return out
        leaves, spec = torch.utils._pytree.tree_flatten(out)
        return torch.utils._pytree.tree_unflatten([v if _plain_leaf(v) else None for v in leaves], spec)


def _non_tensor_outputs(model: nn.Module, example_inputs: tuple) -> list[str]:
    """Outputs of the model on the example that are neither tensors nor plain values (e.g. a DynamicCache)."""
    try:
        with torch.inference_mode():
            out = model(*example_inputs)
    except Exception:  # the tracers will report what is wrong, with the user's line
        return []
    leaves, _ = torch.utils._pytree.tree_flatten_with_path(out)
    return [f"{torch.utils._pytree.keystr(path) or 'output'} ({type(v).__name__})" for path, v in leaves if not _plain_leaf(v)]


def adapt(model: nn.Module, example_inputs: tuple) -> tuple[nn.Module, list[str]]:
    """The module to trace for ``model``, and notes on what was changed (nothing, for most models).

    A top-level submodule named like a GraphModule attribute (``meta``, ``code``, ...) is traced
    under the prefix ``model.``; outputs that are not tensors (a ``DynamicCache`` from a model with
    ``use_cache=True``) are dropped from the graph: the pipeline returns ``None`` in their place.
    """
    clash = sorted({name for name, _ in model.named_children()} & _RESERVED)
    dropped = _non_tensor_outputs(model, example_inputs)
    notes = []
    if clash:
        notes.append(f"submodule(s) {clash} share a name with torch.fx GraphModule attributes: captured under the prefix 'model.'")
    if dropped:
        notes.append(
            f"output(s) {', '.join(dropped)} are not tensors and cannot cross a link: dropped from the captured "
            "graph (None in their place). To keep the model's own outputs, turn them off (e.g. use_cache=False)"
        )
    return (_Adapted(model, bool(dropped)) if clash or dropped else model), notes


def trace(model: nn.Module, example_inputs: tuple) -> tuple[fx.GraphModule, str]:
    """Trace with fx, falling back to torch.export. Returns ``(graph_module, method)``.

    The model is traced as :func:`adapt` says (the same way every time, so a plan made from one
    capture builds its stages from another); its notes are in ``graph_module.meta["tierpipe_notes"]``.

    Raises:
        CaptureError: both failed; names the construct in the user's code (file, line, code), the
            module path, and the error of each tracer.
    """
    model, notes = adapt(model, example_inputs)
    tracer = _PathTracer()
    try:
        graph = tracer.trace(model)
        gm = fx.GraphModule(tracer.root, graph, model.__class__.__name__)
        gm.meta["tierpipe_notes"] = notes
        return gm, "fx"
    except Exception as fx_exc:
        fx_error, fx_where, fx_module = fx_exc, _user_frame(fx_exc), tracer.failed_in
    log.info("fx could not trace %s (%s); trying torch.export", type(model).__name__, fx_error)
    try:
        exported, dynamic = _export(model, tuple(example_inputs))
        gm = _without_guards(exported.module())
        gm.meta["tierpipe_notes"] = notes + [
            "captured by torch.export with a dynamic batch dimension: stages batch frames at fan-in (sizes derived "
            "from the batch are recomputed in each stage, never sent)"
            if dynamic
            else "captured by torch.export with a static batch dimension (export could not keep it dynamic): a stage "
            "batches frames at fan-in only where its ops do not fix the batch size (each stage checks at start-up)"
        ]
        return gm, "export"
    except Exception as ex_exc:
        module = f"module {fx_module!r}" if fx_module else "the top-level forward"
        first = str(ex_exc).strip().splitlines()[0] if str(ex_exc).strip() else type(ex_exc).__name__
        raise CaptureError(
            f"cannot capture {type(model).__name__}: torch.export failed ({type(ex_exc).__name__}: {first[:400]}) "
            f"at {_user_frame(ex_exc)}, and torch.fx failed in {module} at {fx_where}: {str(fx_error).splitlines()[0]}. "
            "Fix: make that construct traceable (e.g. replace data-dependent Python control flow with torch.where, "
            "or mark the module as an fx leaf), or pass a model without it."
        ) from None


def _export(model: nn.Module, example_inputs: tuple):
    """torch.export with a dynamic batch dimension (dim 0 of every tensor input), else a static one.

    Returns ``(exported_program, dynamic)``. A batch of one is doubled for the export (export
    specialises dimensions of size 1); the graph is then profiled with the inputs as given.
    """
    tensors = [x for x in example_inputs if isinstance(x, torch.Tensor) and x.dim()]
    if tensors and len({x.shape[0] for x in tensors}) == 1:
        batch = torch.export.Dim("batch", min=1, max=65536)
        doubled = tuple(torch.cat([x, x]) if isinstance(x, torch.Tensor) and x.dim() and x.shape[0] == 1 else x for x in example_inputs)
        shapes = torch.export.ShapesCollection()
        for x in doubled:
            if isinstance(x, torch.Tensor) and x.dim():
                shapes[x] = {0: batch}
        try:
            return torch.export.export(model, doubled, dynamic_shapes=shapes.dynamic_shapes(model, doubled)), True
        except Exception as exc:  # the model fixes its batch size somewhere: keep it static
            log.info("export could not keep the batch dimension dynamic (%s); exporting it static", str(exc).splitlines()[0][:200])
    return torch.export.export(model, example_inputs), False


class _Profiler(fx.Interpreter):
    """Runs the graph node by node, recording FLOPs and output specs per node."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm, garbage_collect_values=True)
        self.flops: dict[str, int] = {}
        self.specs: dict[str, list[TensorSpec]] = {}

    def run_node(self, n: fx.Node):
        if n.op in ("placeholder", "output", "get_attr"):
            out = super().run_node(n)
        else:
            with FlopCounterMode(display=False) as counter:
                out = super().run_node(n)
            self.flops[n.name] = counter.get_total_flops()
        self.specs[n.name] = TensorSpec.of(out)
        return out


def _module_path(n: fx.Node) -> str:
    if n.op == "call_module":
        return str(n.target)
    stack = n.meta.get("nn_module_stack") or {}
    return str(next(reversed(stack.values()))[0]) if stack else ""


def _attr_tensors(gm: fx.GraphModule, n: fx.Node) -> list[torch.Tensor]:
    """The parameters and buffers an op reads directly (a module's own, or a ``get_attr`` tensor)."""
    if n.op == "call_module":
        mod = gm.get_submodule(str(n.target))
        return [*mod.parameters(), *mod.buffers()]
    if n.op == "get_attr":
        value = gm
        for part in str(n.target).split("."):
            value = getattr(value, part)
        return [value] if isinstance(value, torch.Tensor) else []
    return []


def _storage_key(t: torch.Tensor) -> str:
    """One key per tensor in memory: tied weights (one tensor under two names) share it."""
    return f"{t.untyped_storage().data_ptr():x}:{t.untyped_storage().nbytes()}"


# The analytic host: what ``timing="analytic"`` charges per op. Rough figures of one server core;
# what matters is that they never change, so plans made from them are the same on every machine.
ANALYTIC_GFLOPS = 20.0
ANALYTIC_BYTES_PER_S = 8e9
ANALYTIC_OP_S = 2e-6


def analytic_time_s(flops: int, bytes_touched: int) -> float:
    """Host seconds of one op under the analytic model: fixed overhead + FLOPs + memory traffic."""
    return ANALYTIC_OP_S + flops / (ANALYTIC_GFLOPS * 1e9) + bytes_touched / ANALYTIC_BYTES_PER_S


def capture(
    model: nn.Module, example_inputs: tuple | list | torch.Tensor, repeats: int = 5, warmup: int = 1, timing: str = "measured"
) -> Graph:
    """Capture ``model`` as a DAG of ops and measure each op on this host.

    Args:
        model: any ``nn.Module`` (put it in eval mode first).
        example_inputs: a tuple of example inputs (a lone tensor is wrapped).
        repeats: timed runs; each node's host time is their median.
        warmup: untimed runs first.
        timing: ``"measured"`` (median host time of every op) or ``"analytic"`` (from FLOPs and
            bytes, see :func:`analytic_time_s`: the same on every machine and every run, for tests
            and reproducible plans; codec costs then come from fixed figures too).

    Returns:
        A :class:`Graph` in topological order; ``get_attr`` nodes (parameters read
        directly) are folded into their consumers' ``param_bytes``.

    Raises:
        CaptureError: neither fx nor export could capture the model.

    >>> from partition.zoo import get_model
    >>> g = capture(*get_model("resnet18"))
    >>> g.outputs
    ['fc']
    """
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    example_inputs = tuple(example_inputs)
    if timing not in ("measured", "analytic"):
        raise ValueError(f"timing={timing!r}: use 'measured' or 'analytic'")
    start = time.perf_counter()
    gm, method = trace(model, example_inputs)
    with torch.inference_mode():
        prof = _Profiler(gm)
        try:
            prof.run(*example_inputs)
        except Exception as exc:
            shapes = [tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__ for x in example_inputs]
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise CaptureError(
                f"the model fails on its example inputs {shapes} ({type(exc).__name__}: {first}); "
                "give inputs it accepts (the CLI's --input-shape)"
            ) from None
        times = time_nodes(gm, example_inputs, repeats, warmup) if timing == "measured" else None

    notes = list(gm.meta.get("tierpipe_notes", ()))  # what trace() changed (adapt), found once
    strip = "model." if notes else ""  # an adapted model sits under the prefix 'model.': report its own paths
    shape_only = shape_only_nodes(gm)  # recomputed by each stage, not ops of the graph (shapes.py)
    attrs = {n.name: n for n in gm.graph.nodes if n.op == "get_attr"}
    param_sizes: dict[str, int] = {}
    nodes: list[Node] = []
    inputs: list[str] = []
    outputs: list[str] = []
    for n in gm.graph.nodes:
        if n.op == "placeholder":
            inputs.append(n.name)
            nodes.append(Node(n.name, "input", str(n.target), "", (), tuple(prof.specs.get(n.name, ())), 0, 0, 0.0))
        elif n.op == "output":
            outputs = [a.name for a in torch.utils._pytree.tree_leaves(n.args[0]) if isinstance(a, fx.Node) and a.op != "get_attr"]
        elif n.op != "get_attr" and n.name not in shape_only:
            deps = [a for a in n.all_input_nodes if a.name not in shape_only]
            tensors = _attr_tensors(gm, n) + [t for a in deps if a.name in attrs for t in _attr_tensors(gm, attrs[a.name])]
            param_bytes = sum(t.numel() * t.element_size() for t in tensors)
            keys = tuple(dict.fromkeys(_storage_key(t) for t in tensors))
            param_sizes.update({_storage_key(t): t.untyped_storage().nbytes() for t in tensors})
            target = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", str(n.target))
            specs = tuple(prof.specs.get(n.name, ()))
            flops = int(prof.flops.get(n.name, 0))
            if times is not None:
                host_s = times.get(n.name, 0.0)
            else:
                touched = (
                    param_bytes
                    + sum(s.nbytes for s in specs)
                    + sum(s.nbytes for a in deps if a.name not in attrs for s in prof.specs.get(a.name, ()))
                )
                host_s = analytic_time_s(flops, touched)
            nodes.append(
                Node(
                    name=n.name,
                    op="compute",
                    target=str(target),
                    module=_module_path(n).removeprefix(strip),
                    inputs=tuple(dict.fromkeys(a.name for a in deps if a.name not in attrs)),
                    outputs=specs,
                    flops=flops,
                    param_bytes=param_bytes,
                    host_time_s=host_s,
                    param_keys=keys,
                )
            )
    graph = Graph(
        nodes, inputs, outputs, gm, method, timing=timing, example_inputs=example_inputs, notes=tuple(notes), param_sizes=param_sizes
    )
    graph.capture_s = time.perf_counter() - start
    return graph
