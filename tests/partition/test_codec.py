import pytest
import torch

from partition import WireError
from partition.codec import CODECS, decode, encode, encoded_nbytes, roundtrip


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("shape", [(2, 8, 4, 4), (3,), (), (1, 1000), (0, 3)])
def test_decode_of_encode_is_the_roundtrip(codec, shape):
    x = torch.randn(shape)
    header, payload = encode(x, codec)
    y = decode(header, payload)
    assert y.shape == x.shape and y.dtype == x.dtype
    torch.testing.assert_close(y, roundtrip(x, codec), rtol=0, atol=1e-6)
    assert encoded_nbytes(x.numel() * 4, shape, "float32", codec.split("+")[0]) == header["raw_nbytes"]


@pytest.mark.parametrize("codec", [c for c in CODECS if c.startswith("raw")])
def test_lossless_codecs_are_exact(codec):
    x = torch.randn(4, 16, 8, 8)
    assert torch.equal(decode(*encode(x, codec)), x)
    ints = torch.randint(-5, 5, (7, 3))
    assert torch.equal(decode(*encode(ints, codec)), ints)


def test_int8_is_a_quarter_of_fp32_and_close():
    x = torch.relu(torch.randn(1, 64, 32, 32))
    header, payload = encode(x, "int8")
    assert len(payload) <= 0.26 * x.numel() * 4
    # affine int8 over [0, max]: error at most half a step
    assert (decode(header, payload) - x).abs().max() <= x.max() / 255 / 2 + 1e-6


def test_non_float_tensors_pass_raw_through_lossy_codecs():
    x = torch.arange(12).reshape(3, 4)
    assert torch.equal(decode(*encode(x, "int8-channel+zstd")), x)


@pytest.mark.parametrize(
    "mutate,words",
    [
        (lambda h, p: ({**h, "shape": [2, 9, 4, 4]}, p), "needs"),
        (lambda h, p: ({**h, "dtype": "float99"}, p), "unknown dtype"),
        (lambda h, p: ({k: v for k, v in h.items() if k != "shape"}, p), "lacks field"),
        (lambda h, p: (h, bytes(p)[:-3]), "payload has"),
        (lambda h, p: ({**h, "comp": "zstd"}, p), "does not decompress"),
        (lambda h, p: ({**h, "shape": [-1, 8]}, p), "bad shape"),
    ],
)
def test_malformed_frames_are_rejected_with_wire_error(mutate, words):
    header, payload = encode(torch.randn(2, 8, 4, 4), "raw")
    with pytest.raises(WireError, match=words) as err:
        decode(*mutate(header, payload), where="stage 'gateway'")
    assert str(err.value).startswith("stage 'gateway'")


def test_oversized_frames_are_rejected_before_allocating():
    header, payload = encode(torch.randn(2, 8), "raw")
    huge = {**header, "shape": [100000, 100000]}
    with pytest.raises(WireError, match="over the limit"):
        decode(huge, payload, max_nbytes=1 << 20)
