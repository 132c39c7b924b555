"""What the sources stream: the frame shape and dtype a topology's ``sources:`` declare, used and checked.

A topology may say what its cameras produce (``shape: [1, 3, 224, 224]``, ``dtype: uint8``). The
partitioner then captures and prices the model on exactly those frames, and the pipeline streams
them; a model that cannot take them, a ``--input-shape`` that says otherwise or a plan made for
other frames is an error naming the field, never a silent substitution.

>>> import torch
>>> frame_inputs((torch.zeros(1, 3, 96, 96),), [1, 3, 224, 224], "float32")[0].shape
torch.Size([1, 3, 224, 224])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import CaptureError

__all__ = ["SourceFrames", "source_frames", "frame_inputs", "check_plan_frames", "frame_problem"]


@dataclass(frozen=True)
class SourceFrames:
    """The frames a topology's sources declare: ``shape`` and ``dtype`` may each be None (not declared)."""

    shape: list[int] | None
    dtype: str | None
    where: str  # "FILE: sources[0]", for messages


def source_frames(topology, input_shape: list[int] | None = None) -> SourceFrames:
    """The one frame shape/dtype the topology's sources declare, merged with ``--input-shape``.

    Raises:
        CaptureError: two sources declare different frames, or ``input_shape`` contradicts a source.
    """
    declared = []
    for i, src in enumerate(getattr(topology, "sources", None) or []):
        dtype = src.dtype if "dtype" in src.model_fields_set else None
        if src.shape is not None or dtype is not None:
            declared.append(SourceFrames(list(src.shape) if src.shape else None, dtype, f"{topology.source_file}: sources[{i}]"))
    for other in declared[1:]:
        if (other.shape, other.dtype) != (declared[0].shape, declared[0].dtype):
            raise CaptureError(
                f"{declared[0].where} streams {_describe(declared[0])} but {other.where} streams "
                f"{_describe(other)}: one pipeline runs one plan for one input; give every source "
                "the same shape and dtype (or run one pipeline per kind of frame)"
            )
    frames = declared[0] if declared else SourceFrames(None, None, "")
    if input_shape is not None:
        if frames.shape is not None and list(input_shape) != frames.shape:
            raise CaptureError(
                f"--input-shape {','.join(map(str, input_shape))} contradicts {frames.where}.shape "
                f"{frames.shape}: drop --input-shape or edit the topology"
            )
        frames = SourceFrames(list(input_shape), frames.dtype, frames.where or "--input-shape")
    return frames


def frame_inputs(example: tuple | None, shape: list[int] | None, dtype: str | None, where: str = "") -> tuple:
    """Model inputs of the declared shape/dtype, from the model's own example where it has one.

    Float frames are random normal, integer frames random in the example's value range (token ids stay
    valid ids), so capture and pricing see data like the sources'.

    Raises:
        CaptureError: the declared dtype is not the one the model takes, or a multi-input model.
    """
    example = tuple(example) if example else ()
    if shape is None and dtype is None:
        if not example:
            raise CaptureError(
                "the model came without example inputs: return (model, example_inputs), or declare "
                "sources[].shape in the topology, or pass --input-shape"
            )
        return example
    if len(example) > 1:
        raise CaptureError(
            f"{where}: sources declare one frame, but the model takes {len(example)} inputs; "
            "drop shape/dtype from sources (the model's example inputs are streamed)"
        )
    first = example[0] if example and isinstance(example[0], torch.Tensor) else None
    if dtype is not None and first is not None and str(first.dtype).removeprefix("torch.") != dtype:
        raise CaptureError(
            f"{where}.dtype is {dtype}, but the model takes {str(first.dtype).removeprefix('torch.')} "
            f"input (its example input); set dtype: {str(first.dtype).removeprefix('torch.')} in the "
            "topology, or convert inside the model (e.g. a first layer doing x.float() / 255)"
        )
    dt = getattr(torch, dtype) if dtype else (first.dtype if first is not None else torch.float32)
    shape = list(shape) if shape is not None else list(first.shape) if first is not None else None
    if shape is None:
        raise CaptureError(f"{where}: a dtype but no shape, and the model has no example input; add shape: [...]")
    if first is not None and list(first.shape) == shape and first.dtype == dt:
        return (first,)
    gen = torch.Generator().manual_seed(0)
    if dt.is_floating_point:
        return (torch.randn(shape, generator=gen).to(dt),)
    if dt == torch.bool:
        return (torch.zeros(shape, dtype=dt),)
    high = int(first.max()) + 1 if first is not None and first.numel() else (256 if dt == torch.uint8 else 2)
    return (torch.randint(0, max(high, 1), shape, generator=gen, dtype=dt),)


def check_plan_frames(plan, frames: SourceFrames) -> None:
    """A saved plan must have been made for the frames the sources declare.

    Raises:
        CaptureError: the plan's input shape or dtype differs from the sources'.
    """
    if frames.shape is None and frames.dtype is None:
        return
    spec = plan.inputs[0]
    if (frames.shape is not None and list(spec.shape or []) != frames.shape) or (frames.dtype is not None and spec.dtype != frames.dtype):
        raise CaptureError(
            f"the plan was made for {list(spec.shape or [])} {spec.dtype} input, but "
            f"{frames.where} streams {_describe(frames)}; partition again for these frames "
            "(tierpipe partition ... --topology with this file)"
        )


def frame_problem(specs, values: tuple) -> str:
    """What is wrong with one frame's values against the plan's input specs ("" when nothing is).

    >>> from partition.graph import TensorSpec
    >>> frame_problem((TensorSpec((1, 3), "float32", 12),), (torch.zeros(1, 4),))  # doctest: +ELLIPSIS
    ", value 0: got [1, 4] torch.float32, the plan expects [1, 3] float32; send frames of that shape and dtype, or ..."
    """
    if len(values) != len(specs):
        return f" has {len(values)} values, the model takes {len(specs)}"
    for j, (value, spec) in enumerate(zip(values, specs)):
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != spec.shape or str(value.dtype).removeprefix("torch.") != spec.dtype:
            got = f"{list(value.shape)} {value.dtype}" if isinstance(value, torch.Tensor) else type(value).__name__
            return (
                f", value {j}: got {got}, the plan expects {list(spec.shape)} {spec.dtype}; send frames of that shape and "
                "dtype, or partition again for these (--input-shape, or the topology's sources[].shape/dtype)"
            )
    return ""


def _describe(frames: SourceFrames) -> str:
    return " ".join(x for x in (str(frames.shape) if frames.shape else "", frames.dtype or "") if x) or "(undeclared)"
