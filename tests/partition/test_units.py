"""Quantities in topology files: written with a unit, read without guessing, dumped so they load back."""

import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

from partition.units import accepted_units, format_quantity, parse_quantity

SPELLINGS = [
    # (text, kind, value in the kind's base unit)
    ("20 bps", "bandwidth_mbps", 20e-6),
    ("20 kbps", "bandwidth_mbps", 0.02),
    ("20 Kbps", "bandwidth_mbps", 0.02),  # K read as k (decimal, like M and G)
    ("20 Mbps", "bandwidth_mbps", 20.0),  # pint alone: megabaud
    ("2 Gbps", "bandwidth_mbps", 2000.0),
    ("20 kbit/s", "bandwidth_mbps", 0.02),
    ("20 Mbit/s", "bandwidth_mbps", 20.0),
    ("20 Mb/s", "bandwidth_mbps", 20.0),  # bits; pint alone: megabarn per second
    ("20 MB/s", "bandwidth_mbps", 160.0),  # bytes: 8 bits each
    ("20Mbit / s", "bandwidth_mbps", 20.0),
    ("512 MB", "memory_mb", 512.0),
    ("512 MiB", "memory_mb", 512 * 2**20 / 1e6),
    ("2 GiB", "memory_mb", 2 * 2**30 / 1e6),
    ("64 KB", "memory_mb", 0.064),  # KB read as kB; KiB is the 1024 one
    ("64 KiB", "memory_mb", 64 * 1024 / 1e6),
    ("5 ms", "time_ms", 5.0),
    ("500 us", "time_ms", 0.5),
    ("500 µs", "time_ms", 0.5),  # micro sign U+00B5
    ("500 μs", "time_ms", 0.5),  # Greek mu U+03BC
    ("2 s", "time_ms", 2000.0),
    ("10 s", "time_s", 10.0),
    ("40000 ms", "time_s", 40.0),
    ("500 mW", "power_w", 0.5),
    ("12.5 nJ/bit", "energy_nj_per_byte", 100.0),
    ("15 %", "percent", 15.0),
]


@pytest.mark.parametrize("text,kind,value", SPELLINGS, ids=[s[0] for s in SPELLINGS])
def test_common_spellings_parse_to_their_value_without_a_warning(text, kind, value):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert parse_quantity(text, kind) == pytest.approx(value, rel=1e-12)


BARE = [
    (20000000, "bandwidth_mbps"),
    (20.5, "bandwidth_mbps"),
    ("20", "bandwidth_mbps"),
    (" 2e7 ", "bandwidth_mbps"),
    (4, "time_ms"),
    (1024, "memory_mb"),
    (2, "power_w"),
    (100, "energy_nj_per_byte"),
    (10, "time_s"),
    (15, "percent"),
    (0.15, "percent"),
]  # 15 % or 0.15: a bare percentage is ambiguous


@pytest.mark.parametrize("value,kind", BARE)
def test_a_bare_number_is_refused_with_the_value_and_the_accepted_units(value, kind):
    with pytest.raises(ValueError) as err:
        parse_quantity(value, kind)
    msg = str(err.value)
    assert f"{str(value).strip()} has no unit; write it with one, e.g. " in msg
    assert f"(accepted: {accepted_units(kind)})" in msg


def test_the_bandwidth_message_lists_bits_and_bytes():
    with pytest.raises(ValueError) as err:
        parse_quantity(20000000, "bandwidth_mbps")
    assert str(err.value) == (
        '20000000 has no unit; write it with one, e.g. "20 Mbit/s" (accepted: bit/s, kbit/s, Mbit/s, '
        "Gbit/s, bps, kbps, Mbps, Gbps, B/s, kB/s, MB/s, GB/s)"
    )


@pytest.mark.parametrize("kind", ["time_ms", "time_s", "bandwidth_mbps", "memory_mb", "percent", "power_w"])
@pytest.mark.parametrize("zero", [0, 0.0, "0", " 0.0 "])
def test_zero_needs_no_unit(kind, zero):
    assert parse_quantity(zero, kind) == 0.0  # zero in any unit; a range check (bandwidth > 0) still applies after


WRONG = [
    ("512 ms", "memory_mb", "ms is a unit for a time, not for a memory size"),
    ("20 Hz", "bandwidth_mbps", "unknown unit 'Hz' for a bandwidth"),  # pint: 1/time, like bit/s
    ("512 %", "memory_mb", "% is a unit for a percentage, not for a memory size"),  # pint: both dimensionless
    ("3 MB", "percent", "MB is a unit for a memory size, not for a percentage"),
    ("20 mbps", "bandwidth_mbps", "unknown unit 'mbps'"),  # m is milli: not guessed
    ("5 parsecs", "time_ms", "unknown unit 'parsecs'"),
    ("9**9**9 MB", "memory_mb", "write a number and a unit"),  # never evaluated
    ("fast", "bandwidth_mbps", "write a number and a unit"),
]


@pytest.mark.parametrize("text,kind,words", WRONG, ids=[w[0] for w in WRONG])
def test_a_unit_of_another_kind_or_none_is_named(text, kind, words):
    with pytest.raises(ValueError, match="accepted: ") as err:
        parse_quantity(text, kind)
    assert words in str(err.value)


@pytest.mark.parametrize("value", [True, None, [20], {"Mbit/s": 20}])
def test_other_types_are_refused(value):
    with pytest.raises(ValueError, match="with its unit"):
        parse_quantity(value, "bandwidth_mbps")


@given(
    st.sampled_from(["bandwidth_mbps", "memory_mb", "time_ms", "time_s", "power_w", "energy_nj_per_byte", "percent"]),
    st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False),
)
def test_a_written_quantity_reads_back_exactly(kind, value):
    assert parse_quantity(format_quantity(value, kind), kind) == value
