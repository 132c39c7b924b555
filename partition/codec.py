"""Compression of activations at a cut: raw, fp16, int8 (per tensor or per channel), + lz4/zstd.

A codec name is a quantiser with an optional lossless compressor:
``raw``, ``fp16``, ``int8``, ``int8-channel``, and any of them with ``+lz4`` or
``+zstd`` (``int8+zstd``). Only floating tensors are quantised; other tensors
pass raw (and are still compressed).

``encode`` returns a small header (plain data) and one contiguous buffer; the
buffer is a view of the tensor's memory when nothing has to change it.

>>> import torch
>>> x = torch.randn(2, 8, 4, 4)
>>> header, buf = encode(x, "int8-channel")
>>> len(buf) == x.numel() + 2 * 4 * 8       # int8 values + scale, zero point per channel
True
>>> (decode(header, buf) - x).abs().max() < 0.05
tensor(True)
"""

from __future__ import annotations

import functools
import math

import lz4.block
import numpy as np
import torch
import zstandard

from .errors import CodecError, WireError

__all__ = [
    "CODECS",
    "QUANTISERS",
    "COMPRESSORS",
    "parse_codec",
    "encode",
    "decode",
    "roundtrip",
    "encoded_nbytes",
    "is_lossless",
    "codec_seconds_per_byte",
    "nominal_codec_seconds_per_byte",
]

QUANTISERS = ("raw", "fp16", "int8", "int8-channel")
COMPRESSORS = ("", "lz4", "zstd")
CODECS = tuple(q + (f"+{c}" if c else "") for q in QUANTISERS for c in COMPRESSORS)
_ITEMSIZE = {"raw": None, "fp16": 2, "int8": 1, "int8-channel": 1}


def parse_codec(codec: str) -> tuple[str, str]:
    """``"int8+zstd"`` -> ``("int8", "zstd")``.

    Raises:
        CodecError: unknown quantiser or compressor, naming the valid ones (also a ValueError).
    """
    quant, _, comp = str(codec).partition("+")
    if quant not in QUANTISERS or comp not in COMPRESSORS:
        raise CodecError(f"unknown codec {codec!r}; use auto or one of {', '.join(CODECS)}")
    return quant, comp


def is_lossless(codec: str) -> bool:
    return parse_codec(codec)[0] == "raw"


def _quantisable(t: torch.Tensor) -> bool:
    return t.is_floating_point() and t.numel() > 0


def _channel_axis(t: torch.Tensor) -> int:
    return 1  # [batch, channels, ...]; per-channel is used only on tensors of 2+ dims


def _affine(t: torch.Tensor, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Affine int8: q = round(x / scale) + zero_point, in [-128, 127]. Returns (q, scale, zero_point)."""
    x = t.detach().float()
    per_channel = per_channel and x.dim() >= 2
    if per_channel:
        axis = _channel_axis(x)
        moved = x.movedim(axis, 0).reshape(x.shape[axis], -1)
        lo, hi = moved.amin(dim=1), moved.amax(dim=1)
    else:
        lo, hi = x.amin().reshape(1), x.amax().reshape(1)
    lo, hi = torch.minimum(lo, torch.zeros_like(lo)), torch.maximum(hi, torch.zeros_like(hi))
    scale = ((hi - lo) / 255.0).clamp_min(1e-12)
    zero = (-128 - torch.round(lo / scale)).clamp(-128, 127)
    if per_channel:
        shape = [1] * x.dim()
        shape[_channel_axis(x)] = -1
        s, z = scale.reshape(shape), zero.reshape(shape)
    else:
        s, z = scale[0], zero[0]
    q = torch.clamp(torch.round(x / s) + z, -128, 127).to(torch.int8)
    return q, scale.float(), zero.float()


def _dequant(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if scale.numel() > 1:
        shape = [1] * q.dim()
        shape[_channel_axis(q)] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    else:
        scale, zero = scale[0], zero[0]
    return ((q.float() - zero) * scale).to(dtype)


def roundtrip(t: torch.Tensor, codec: str) -> torch.Tensor:
    """What the receiver gets after ``codec``: used to measure accuracy without serialising."""
    quant, _ = parse_codec(codec)
    if quant == "raw" or not _quantisable(t):
        return t
    if quant == "fp16":
        return t.to(torch.float16).to(t.dtype)
    q, scale, zero = _affine(t, quant == "int8-channel")
    return _dequant(q, scale, zero, t.dtype)


def _as_bytes(t: torch.Tensor) -> memoryview:
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return memoryview(t.numpy().reshape(-1).view(np.uint8))


@functools.lru_cache(maxsize=8)
def _zstd(level: int = 3) -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
    return zstandard.ZstdCompressor(level=level), zstandard.ZstdDecompressor()


def _compress(buf: memoryview | bytes, comp: str) -> bytes | memoryview:
    if comp == "lz4":
        return lz4.block.compress(buf, store_size=False)
    if comp == "zstd":
        return _zstd()[0].compress(buf)
    return buf


def _decompress(buf: bytes | memoryview, comp: str, expected: int, where: str) -> bytes | memoryview:
    try:
        if comp == "lz4":
            return lz4.block.decompress(buf, uncompressed_size=expected)
        if comp == "zstd":
            declared = zstandard.frame_content_size(buf)
            if declared > expected:  # refuse before allocating what the frame header claims
                raise ValueError(f"its frame header declares {declared} bytes")
            out = _zstd()[1].decompress(buf, max_output_size=expected)
            if len(out) != expected:
                raise ValueError(f"decompressed to {len(out)} bytes")
            return out
    except Exception as exc:
        raise WireError(
            f"{where}: {comp} payload does not decompress to the {expected} bytes its header declares ({exc}); "
            "the frame is corrupt or was encoded with another codec"
        ) from None
    return buf


def encode(t: torch.Tensor, codec: str) -> tuple[dict, bytes | memoryview]:
    """Encode one tensor. Returns ``(header, payload)``; the header is plain data (msgpack-able).

    The header holds shape, dtype, the quantiser, the compressor, and the byte
    count of the uncompressed payload, so the decoder can check every length.
    """
    quant, comp = parse_codec(codec)
    dtype = str(t.dtype).removeprefix("torch.")
    t = t.detach().cpu()
    if quant == "raw" or not _quantisable(t):
        quant, body = "raw", _as_bytes(t)
    elif quant == "fp16":
        body = _as_bytes(t.to(torch.float16))
    else:
        q, scale, zero = _affine(t, quant == "int8-channel")
        # layout: int8 values, then float32 scales, then float32 zero points
        body = b"".join([bytes(_as_bytes(q)), scale.numpy().tobytes(), zero.numpy().tobytes()])
    header = {"shape": list(t.shape), "dtype": dtype, "quant": quant, "comp": comp, "raw_nbytes": len(body)}
    return header, _compress(body, comp)


def _expected_nbytes(shape: list[int], dtype: torch.dtype, quant: str) -> int:
    numel = math.prod(shape)  # Python ints: a hostile shape cannot overflow the size check
    if quant == "raw":
        return numel * torch.empty((), dtype=dtype).element_size()
    if quant == "fp16":
        return numel * 2
    channels = shape[1] if (quant == "int8-channel" and len(shape) >= 2) else 1
    return numel + 8 * channels


def decode(header: dict, payload: bytes | memoryview, where: str = "decode", max_nbytes: int | None = None) -> torch.Tensor:
    """Decode one tensor, checking its header against its payload.

    Raises:
        WireError: a field is missing, a dtype unknown, a length wrong, or the
            tensor larger than ``max_nbytes``; the message starts with ``where``.
    """
    try:
        shape, dtype_name, quant, comp = list(header["shape"]), header["dtype"], header["quant"], header["comp"]
    except (KeyError, TypeError) as exc:
        raise WireError(f"{where}: tensor header lacks field {exc}; expected shape, dtype, quant, comp") from None
    dtype = getattr(torch, str(dtype_name), None)
    if not isinstance(dtype, torch.dtype):
        raise WireError(f"{where}: unknown dtype {dtype_name!r} in tensor header")
    if len(shape) > 16 or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < (1 << 40) for d in shape):
        raise WireError(f"{where}: bad shape {str(shape)[:80]} in tensor header; expected up to 16 non-negative integers")
    if quant not in QUANTISERS or comp not in COMPRESSORS:
        raise WireError(f"{where}: unknown codec {quant}+{comp} in tensor header")
    expected = _expected_nbytes(shape, dtype, quant)
    if max_nbytes is not None and expected > max_nbytes:
        raise WireError(
            f"{where}: tensor of shape {shape} {dtype_name} needs {expected} bytes, over the limit of {max_nbytes}; "
            "raise the stage's max_frame_bytes if this size is expected"
        )
    body = _decompress(payload, comp, expected, where)
    if len(body) != expected:
        raise WireError(f"{where}: payload has {len(body)} bytes but shape {shape} {dtype_name} ({quant}) needs {expected}")
    if expected == 0 or math.prod(shape) == 0:
        return torch.empty(shape, dtype=dtype)
    if quant == "raw":
        view_dtype = torch.int16 if dtype == torch.bfloat16 else dtype
        t = torch.frombuffer(bytearray(body), dtype=view_dtype).reshape(shape) if expected else torch.empty(shape, dtype=view_dtype)
        return t.view(dtype) if view_dtype != dtype else t
    if quant == "fp16":
        return torch.frombuffer(bytearray(body), dtype=torch.float16).reshape(shape).to(dtype)
    numel = math.prod(shape)
    raw = bytearray(body)
    q = torch.frombuffer(raw, dtype=torch.int8, count=numel).reshape(shape)
    channels = (len(body) - numel) // 8
    scale = torch.frombuffer(raw, dtype=torch.float32, count=channels, offset=numel)
    zero = torch.frombuffer(raw, dtype=torch.float32, count=channels, offset=numel + 4 * channels)
    return _dequant(q, scale, zero, dtype)


@functools.cache
def codec_seconds_per_byte(codec: str) -> tuple[float, float]:
    """(encode, decode) seconds per raw input byte of ``codec`` on this host, measured once per process.

    Measured on 1 MiB of post-ReLU-like activations; the cost model scales it by tier speed.
    """
    if parse_codec(codec) == ("raw", ""):
        return 0.0, 0.0
    import time

    gen = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(1, 64, 64, 64, generator=gen))
    enc, dec = [], []
    for _ in range(3):
        start = time.perf_counter()
        header, payload = encode(x, codec)
        mid = time.perf_counter()
        decode(header, payload)
        enc.append(mid - start)
        dec.append(time.perf_counter() - mid)
    nbytes = x.numel() * x.element_size()
    return sorted(enc)[1] / nbytes, sorted(dec)[1] / nbytes


# (encode, decode) nanoseconds per raw byte on the analytic host (see ``capture(timing="analytic")``):
# fixed figures of the order this machine measures, so plans made from them never depend on the run.
_NOMINAL_QUANT_NS = {"raw": (0.0, 0.0), "fp16": (0.3, 0.3), "int8": (1.0, 0.5), "int8-channel": (1.5, 0.6)}
_NOMINAL_COMP_NS = {"": (0.0, 0.0), "lz4": (0.6, 0.2), "zstd": (2.5, 0.6)}


def nominal_codec_seconds_per_byte(codec: str) -> tuple[float, float]:
    """(encode, decode) seconds per raw input byte of ``codec`` on the analytic host (fixed figures)."""
    quant, comp = parse_codec(codec)
    return tuple((a + b) * 1e-9 for a, b in zip(_NOMINAL_QUANT_NS[quant], _NOMINAL_COMP_NS[comp]))


def encoded_nbytes(nbytes: int, shape: tuple[int, ...] | None, dtype: str, codec: str, ratio: float = 1.0) -> int:
    """Bytes a value of ``nbytes`` takes on the wire with ``codec``.

    ``ratio`` is the compressor's measured ratio (compressed / uncompressed) for this
    tensor; 1.0 without a compressor.
    """
    quant, _ = parse_codec(codec)
    floating = dtype in ("float32", "float64", "float16", "bfloat16")
    if shape is None or quant == "raw" or not floating or nbytes == 0:
        body = nbytes
    elif quant == "fp16":
        body = nbytes * 2 // torch.empty((), dtype=getattr(torch, dtype)).element_size()
    else:
        body = _expected_nbytes(list(shape), torch.float32, quant)
    return int(body * ratio)
