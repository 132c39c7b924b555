"""The wire decoder is total: any input gives a frame that matches the plan exactly, or a WireError."""

import msgpack
import numpy as np
import torch
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from partition.graph import TensorSpec
from runtime.errors import WireError
from runtime.wire import ERROR, Frame, pack, unpack

EXPECTED = {"x": TensorSpec((1, 4), "float32", 16), "n": None}
WHERE = "stage 'gateway' (gateway-0)"
LIMIT = 1 << 20


def check(data):
    """unpack either refuses (WireError naming the stage) or returns exactly what the plan says."""
    try:
        frame = unpack(data, EXPECTED, WHERE, LIMIT)
    except WireError as exc:
        assert str(exc).startswith(WHERE)
        return None
    if ERROR in frame.values:
        assert set(frame.values) == {ERROR} and isinstance(frame.values[ERROR], str)
        return frame
    assert set(frame.values) == set(EXPECTED)
    x = frame.values["x"]
    assert isinstance(x, torch.Tensor) and tuple(x.shape) == (1, 4) and x.dtype == torch.float32
    assert isinstance(frame.source, int) and isinstance(frame.seq, int) and all(np.isfinite(frame.ts))
    return frame


PLAIN = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=8), st.binary(max_size=16)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=20,
)
HEADER = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["x", "n", "y", "x.0"]),
        "shape": st.lists(st.integers(-2, 2**62), max_size=5) | st.just([1, 4]),
        "dtype": st.sampled_from(["float32", "float16", "int8", "float23", "Tensor", "bool"]),
        "quant": st.sampled_from(["raw", "fp16", "int8", "int8-channel", "int9"]),
        "comp": st.sampled_from(["", "lz4", "zstd", "gzip"]),
        "raw_nbytes": st.integers(-1, 2**40),
    }
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes(data):
    check(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    src=PLAIN,
    seq=PLAIN,
    ts=PLAIN,
    values=PLAIN,
    headers=st.lists(HEADER, max_size=3),
    payloads=st.lists(st.binary(max_size=64), max_size=3),
    blob=st.booleans(),
)
def test_any_envelope(src, seq, ts, values, headers, payloads, blob):
    envelope = {"v": 1, "src": src, "seq": seq, "ts": ts, "tensors": headers, "values": values}
    if blob:
        check(msgpack.packb([envelope, payloads], use_bin_type=True))
    else:
        check((msgpack.packb(envelope, use_bin_type=True), [np.frombuffer(p, np.uint8) for p in payloads]))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_valid_frames(data):
    x = torch.randn(1, 4, generator=torch.Generator().manual_seed(0))  # the same frame every example
    codec = data.draw(st.sampled_from(["raw", "fp16", "int8", "int8-channel+zstd", "raw+lz4"]))
    envelope, payloads = pack(Frame(0, 3, [1.0], {"x": x, "n": 2}), codec)
    raw = bytearray(envelope)
    for _ in range(data.draw(st.integers(0, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    body = [bytearray(p.tobytes()) for p in payloads]
    if body and body[0] and data.draw(st.booleans()):
        body[0][data.draw(st.integers(0, len(body[0]) - 1))] ^= 0xFF
    untouched = bytes(raw) == envelope and [bytes(b) for b in body] == [p.tobytes() for p in payloads]
    frame = check((bytes(raw), [np.frombuffer(bytes(b), np.uint8) for b in body]))
    if untouched:
        assert frame is not None and frame.key == (0, 3)  # a frame nobody touched always passes
        if codec == "raw":
            assert torch.equal(frame.values["x"], x)


def test_named_classes_of_bad_frames():
    good_env = {"v": 1, "src": 0, "seq": 0, "ts": [0.0], "values": {"n": 1}}
    x = np.zeros(4, np.float32).view(np.uint8)

    def frame(**changes):
        env = {
            **good_env,
            "tensors": [{"name": "x", "shape": [1, 4], "dtype": "float32", "quant": "raw", "comp": "", "raw_nbytes": 16}],
            **changes,
        }
        return msgpack.packb(env), [x]

    cases = {
        "infinite seq": frame(seq=float("inf")),
        "float src": frame(src=1.5),
        "nested error": msgpack.packb({**good_env, "tensors": [], "values": {ERROR: [[[[["deep"]]]]]}}),
        "empty fp16": frame(tensors=[{"name": "x", "shape": [0, 4], "dtype": "float32", "quant": "fp16", "comp": "", "raw_nbytes": 0}]),
        "shape overflows int64": frame(
            tensors=[
                {"name": "x", "shape": [2**40 - 1, 2**40 - 1, 2**40 - 1], "dtype": "float32", "quant": "raw", "comp": "", "raw_nbytes": 16}
            ]
        ),
        "list where a tensor is expected": (msgpack.packb({**good_env, "tensors": [], "values": {"n": 1, "x": [1, 2, 3, 4]}}), []),
    }
    for name, data in cases.items():
        try:
            unpack(data if isinstance(data, tuple) else (data, []), EXPECTED, WHERE, LIMIT)
        except WireError as exc:
            assert str(exc).startswith(WHERE), name
        else:
            raise AssertionError(f"{name}: accepted")


def test_a_zstd_bomb_is_refused_before_it_is_inflated():
    bomb = zstandard.ZstdCompressor().compress(b"\0" * (64 << 20))  # 64 MiB of zeros in a few KB
    assert len(bomb) < 10_000
    env = {
        "v": 1,
        "src": 0,
        "seq": 0,
        "ts": [0.0],
        "values": {"n": 1},
        "tensors": [{"name": "x", "shape": [1, 4], "dtype": "float32", "quant": "raw", "comp": "zstd", "raw_nbytes": 16}],
    }
    try:
        unpack((msgpack.packb(env), [np.frombuffer(bomb, np.uint8)]), EXPECTED, WHERE, LIMIT)
    except WireError as exc:
        assert "declares" in str(exc) or "decompress" in str(exc)
    else:
        raise AssertionError("accepted")
