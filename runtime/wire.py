"""The activation frame on the wire: a msgpack envelope plus tensors encoded with the link's codec.

    (envelope bytes, [payload, payload, ...])      what pack() makes: payloads out of band
    msgpack([envelope, [payload, ...]])            one blob: also accepted (tools, tests, fuzzers)
    envelope = {"v": 1, "src": source id, "seq": n, "ts": [t_source, t_stage1, ...], "plan": version,
                "tensors": [{"name", "shape", "dtype", "quant", "comp", "raw_nbytes"}, ...],
                "values": {name: int | float | bool | None | list of them}}

Payloads travel out of band: uint8 numpy views of the tensors' own memory (or of the
compressor's output), which Ray serialises without copying them into the envelope and
hands to the receiver as views of its object store; the receiver copies each payload
once, into the tensor it decodes. ``unpack`` checks the frame size, every field, and every tensor's
length, dtype and shape against what the plan says crosses the link; anything off
raises :class:`WireError` naming the stage. A result frame (a frame an early exit below answered:
``values = {"__exit__": exit index}`` and one tensor ``__answer__``) carries nothing else; its answer's
shape is not checked against the plan (it is the model's output, which no link spec describes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import msgpack
import numpy as np
import torch

from partition.codec import decode, encode
from partition.exit_stage import ANSWER, EXIT_AT
from partition.graph import TensorSpec

from .errors import UnknownPlanError, WireError

__all__ = ["Frame", "pack", "unpack", "wire_nbytes", "VERSION", "ERROR"]

VERSION = 1
ERROR = "__error__"
_PLAIN = (int, float, bool, type(None), str)


@dataclass
class Frame:
    """One frame of one source between two stages."""

    source: int
    seq: int
    ts: list[float]
    values: dict[str, object] = field(default_factory=dict)
    plan: int = 0  # the plan version the frame started on: it finishes on that plan

    @property
    def key(self) -> tuple[int, int]:
        return self.source, self.seq


def _plain(value: object) -> bool:
    return isinstance(value, _PLAIN) or (isinstance(value, (list, tuple)) and all(_plain(v) for v in value))


def pack(frame: Frame, codec: str = "raw") -> tuple[bytes, list[np.ndarray]]:
    """Encode ``frame``: tensors with ``codec``, plain values (ints, shapes) in the envelope."""
    tensors, payloads, values = [], [], {}
    for name, value in frame.values.items():
        if isinstance(value, torch.Tensor):
            header, payload = encode(value, codec)
            tensors.append({"name": name, **header})
            payloads.append(payload)
        elif isinstance(value, (list, tuple)) and any(isinstance(v, torch.Tensor) for v in value):
            # a tuple output (e.g. (attention, None)): each element travels on its own
            values[name] = {"__seq__": [None if isinstance(v, torch.Tensor) else v for v in value], "tuple": isinstance(value, tuple)}
            for i, v in enumerate(value):
                if isinstance(v, torch.Tensor):
                    header, payload = encode(v, codec)
                    tensors.append({"name": f"{name}.{i}", **header})
                    payloads.append(payload)
        elif _plain(value):
            values[name] = list(value) if isinstance(value, tuple) else value
        else:
            raise WireError(
                f"value {name!r} of type {type(value).__name__} cannot cross a link; "
                "only tensors, numbers, strings and lists/tuples of them can"
            )
    envelope = {"v": VERSION, "src": frame.source, "seq": frame.seq, "ts": list(frame.ts), "tensors": tensors, "values": values}
    if frame.plan:
        envelope["plan"] = frame.plan
    return msgpack.packb(envelope, use_bin_type=True), [np.frombuffer(p, dtype=np.uint8) for p in payloads]


def _int_in(value, bound: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < bound


def wire_nbytes(data) -> int:
    """Bytes a packed frame puts on the wire (envelope and payloads)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return len(data)
    envelope, payloads = data
    return len(envelope) + sum(p.nbytes if isinstance(p, np.ndarray) else len(p) for p in payloads)


def _check_spec(name: str, tensor: torch.Tensor, spec: TensorSpec | None, where: str) -> None:
    if spec is None or spec.shape is None:
        return
    if tuple(tensor.shape) != tuple(spec.shape) or str(tensor.dtype).removeprefix("torch.") != spec.dtype:
        raise WireError(
            f"{where}: tensor {name!r} is {list(tensor.shape)} {str(tensor.dtype).removeprefix('torch.')}, "
            f"the plan expects {list(spec.shape)} {spec.dtype}; the sender runs another plan or model"
        )


def unpack(
    data,
    expected: Mapping[str, TensorSpec | None] | Mapping[int, Mapping[str, TensorSpec | None]],
    where: str,
    max_nbytes: int,
    versions: bool = False,
) -> Frame:
    """Decode and check a frame: total, whatever the bytes (any failure is a :class:`WireError`).

    A frame that passes matches the plan exactly: every value the stage expects is there, a tensor
    where the plan has a tensor spec (shape and dtype equal), nothing else.

    Args:
        expected: the names this stage must receive, with their specs (``None``: not checked); with
            ``versions=True``, ``{plan version: names and specs}``: a frame is checked against its plan's.
        where: the receiving stage, for messages (``"stage 'gateway' (gateway-0)"``).
        max_nbytes: frames (and decoded tensors) larger than this are rejected.

    Raises:
        WireError: malformed, oversized or unexpected content.
    """
    try:
        return _unpack(data, expected, where, max_nbytes, versions)
    except WireError:
        raise
    except RecursionError:
        raise WireError(f"{where}: frame nests values too deeply") from None
    except Exception as exc:  # totality: whatever else the bytes provoke is a malformed frame
        raise WireError(f"{where}: malformed frame ({type(exc).__name__}: {str(exc)[:200]})") from None


def _unpack(data, expected, where: str, max_nbytes: int, versions: bool) -> Frame:
    if isinstance(data, (bytes, bytearray, memoryview)):
        blob, payloads = data, None
    elif (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and isinstance(data[0], (bytes, bytearray, memoryview))
        and isinstance(data[1], (tuple, list))
    ):
        blob, payloads = data
        if not all(
            isinstance(p, (bytes, bytearray, memoryview)) or (isinstance(p, np.ndarray) and p.dtype == np.uint8 and p.ndim == 1)
            for p in payloads
        ):
            raise WireError(f"{where}: payloads must be bytes or flat uint8 arrays")
    else:
        raise WireError(f"{where}: a frame must be bytes or (envelope bytes, payloads), got {type(data).__name__}")
    total = len(blob) + (
        sum(len(memoryview(p)) if not isinstance(p, np.ndarray) else p.nbytes for p in payloads) if payloads is not None else 0
    )
    if total > max_nbytes:
        raise WireError(
            f"{where}: frame of {total} bytes is over the limit of {max_nbytes}; raise max_frame_bytes if frames this large are expected"
        )
    try:
        decoded_obj = msgpack.unpackb(
            blob, raw=False, max_bin_len=max_nbytes, max_str_len=1 << 16, max_array_len=1 << 16, max_map_len=1 << 16, strict_map_key=False
        )
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise WireError(f"{where}: frame is not a tierpipe envelope ({type(exc).__name__}: {exc})") from None
    if payloads is None:
        if not (
            isinstance(decoded_obj, list)
            and len(decoded_obj) == 2
            and isinstance(decoded_obj[0], dict)
            and isinstance(decoded_obj[1], list)
        ):
            raise WireError(f"{where}: frame must be [envelope, payloads], got a {type(decoded_obj).__name__}")
        envelope, payloads = decoded_obj
    elif isinstance(decoded_obj, dict):
        envelope = decoded_obj
    else:
        raise WireError(f"{where}: envelope must be a map, got a {type(decoded_obj).__name__}")
    if envelope.get("v") != VERSION:
        raise WireError(f"{where}: wire version {envelope.get('v')!r}, this runtime speaks {VERSION}; run one tierpipe version")
    source, seq, ts, plan = envelope.get("src"), envelope.get("seq"), envelope.get("ts"), envelope.get("plan", 0)
    if not _int_in(plan, 1 << 31):
        raise WireError(f"{where}: plan version must be a small non-negative integer, got {str(plan)[:30]!r}")
    if versions:
        if plan not in expected:
            raise UnknownPlanError(f"{where}: frame of plan version {plan}, this stage has versions {sorted(expected)}", plan)
        expected = expected[plan]
    tensors, plain = envelope.get("tensors"), envelope.get("values")
    if not (_int_in(source, 1 << 31) and _int_in(seq, 1 << 62)):
        raise WireError(f"{where}: src and seq must be integers in range, got {str(source)[:30]!r} and {str(seq)[:30]!r}")
    if not (
        isinstance(ts, list)
        and 0 < len(ts) <= 64
        and all(isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) for t in ts)
    ):
        raise WireError(f"{where}: ts must be a list of finite times (one per stage passed)")
    if not isinstance(tensors, list) or not isinstance(plain, dict):
        raise WireError(f"{where}: envelope field 'tensors' must be a list and 'values' a map")
    ts = [float(t) for t in ts]
    if ERROR in plain and not tensors:
        # a frame a lower stage could not compute: it travels on so the sink reports it in order
        if not isinstance(plain[ERROR], str):
            raise WireError(f"{where}: an error frame's message must be a string")
        return Frame(source, seq, ts, {ERROR: plain[ERROR][:4000]}, plan)
    if len(tensors) != len(payloads):
        raise WireError(f"{where}: envelope lists {len(tensors)} tensors but the frame carries {len(payloads)} payloads")
    decoded: dict[str, torch.Tensor] = {}
    for header, payload in zip(tensors, payloads):
        if not isinstance(header, dict) or not isinstance(header.get("name"), str):
            raise WireError(f"{where}: tensor header without a name")
        if not isinstance(payload, (bytes, bytearray, memoryview, np.ndarray)):
            raise WireError(f"{where}: payload of tensor {header['name']!r} is a {type(payload).__name__}, not bytes")
        decoded[header["name"]] = decode(header, memoryview(payload), where=f"{where}, tensor {header['name']!r}", max_nbytes=max_nbytes)
    values: dict[str, object] = {}
    for name, value in plain.items():
        if isinstance(value, dict) and "__seq__" in value:
            items = [decoded.pop(f"{name}.{i}", v) for i, v in enumerate(value["__seq__"])]
            values[name] = tuple(items) if value.get("tuple") else items
        else:
            values[name] = value
    for name, tensor in decoded.items():
        _check_spec(name, tensor, expected.get(name), where)
        values[name] = tensor
    if EXIT_AT in values:  # a result frame: an exit below answered it, it travels to the sink
        if not (_int_in(values[EXIT_AT], 1 << 16) and set(values) == {EXIT_AT, ANSWER} and isinstance(values[ANSWER], torch.Tensor)):
            raise WireError(
                f"{where}: a result frame (answered by an exit below) carries {sorted(values)[:6]}; it must carry "
                f"only {EXIT_AT!r} (a small exit index) and one tensor {ANSWER!r}"
            )
        return Frame(source, seq, ts, values, plan)
    for name, spec in expected.items():
        if spec is not None and spec.shape is not None and name in values and not isinstance(values[name], torch.Tensor):
            raise WireError(
                f"{where}: value {name!r} is a {type(values[name]).__name__}, the plan expects a tensor "
                f"{list(spec.shape)} {spec.dtype}; the sender runs another plan or model"
            )
    if set(values) != set(expected):
        missing, extra = sorted(set(expected) - set(values)), sorted(set(values) - set(expected))
        raise WireError(f"{where}: frame carries the wrong values: missing {missing}, unexpected {extra}; the sender runs another plan")
    return Frame(source, seq, ts, values, plan)


class _Shipped:
    """A result tensor on its way to the driver: pickled as a numpy array (out of band, no copy) and
    rebuilt as a tensor on arrival. A plain tensor pickles through its storage: 0.1-0.3 ms a tensor
    at each end, more than the sink spends on a small model's frame."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __reduce__(self):
        return (_tensor_from, (self.array,))


def _tensor_from(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array if array.flags.writeable else array.copy())


def shippable(value):
    """``value`` (a result: a tensor, or tuples, lists and dicts of them, or anything else) with its CPU
    tensors wrapped to travel as numpy arrays; it unpickles as the same value.

    >>> import pickle
    >>> out = pickle.loads(pickle.dumps(shippable({"logits": torch.arange(3.0), "n": (torch.tensor([1]), 2)})))
    >>> out["logits"], out["n"]
    (tensor([0., 1., 2.]), (tensor([1]), 2))
    """
    if isinstance(value, torch.Tensor):
        if value.device.type != "cpu" or value.requires_grad or value.dtype in (torch.bfloat16,) or value.is_conj():
            return value
        return _Shipped(value.contiguous().numpy())
    if isinstance(value, tuple) and type(value) is tuple:
        return tuple(shippable(v) for v in value)
    if isinstance(value, list):
        return [shippable(v) for v in value]
    if isinstance(value, dict) and type(value) is dict:
        return {k: shippable(v) for k, v in value.items()}
    return value
