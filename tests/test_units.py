"""Tests for commsim.units: the unit grammar, good and bad inputs."""

from __future__ import annotations

import math

import pytest

from commsim.errors import ConfigError
from commsim.units import (
    PARSERS,
    UNIT_HELP,
    parse_bandwidth,
    parse_duration,
    parse_number,
    parse_rate,
    parse_size,
)

GOOD = [
    # duration -> seconds
    (parse_duration, 2, 2.0),
    (parse_duration, 0.25, 0.25),
    (parse_duration, "0.5", 0.5),
    (parse_duration, "1e-3", 1e-3),
    (parse_duration, "12ns", 12e-9),
    (parse_duration, "250us", 2.5e-4),
    (parse_duration, "250µs", 2.5e-4),  # micro sign U+00B5
    (parse_duration, "250μs", 2.5e-4),  # Greek mu U+03BC
    (parse_duration, "20ms", 0.02),
    (parse_duration, "20 ms", 0.02),
    (parse_duration, " 1.5s ", 1.5),
    (parse_duration, "3sec", 3.0),
    (parse_duration, "2min", 120.0),
    (parse_duration, "1.5h", 5400.0),
    (parse_duration, ".5s", 0.5),
    (parse_duration, "1e3ms", 1.0),
    (parse_duration, "-5ms", -0.005),
    (parse_duration, "+5ms", 0.005),
    # size -> bytes
    (parse_size, 871, 871.0),
    (parse_size, "871B", 871.0),
    (parse_size, "2KB", 2000.0),
    (parse_size, "2kB", 2000.0),
    (parse_size, "4KiB", 4096.0),
    (parse_size, "1MB", 1e6),
    (parse_size, "1MiB", 1048576.0),
    (parse_size, "1.5GB", 1.5e9),
    (parse_size, "1GiB", 1024.0**3),
    # rate -> per second
    (parse_rate, 800, 800.0),
    (parse_rate, "800/s", 800.0),
    (parse_rate, "800/sec", 800.0),
    (parse_rate, "800 / s", 800.0),
    (parse_rate, "10/min", 10 / 60),
    (parse_rate, "5/ms", 5000.0),
    (parse_rate, "2/us", 2e6),
    (parse_rate, "3600/h", 1.0),
    # bandwidth -> bits per second
    (parse_bandwidth, 1e6, 1e6),
    (parse_bandwidth, "9600bps", 9600.0),
    (parse_bandwidth, "64Kbps", 64e3),
    (parse_bandwidth, "64kbps", 64e3),
    (parse_bandwidth, "100Mbps", 1e8),
    (parse_bandwidth, "1Gbps", 1e9),
    (parse_bandwidth, "100B/s", 800.0),
    (parse_bandwidth, "1KB/s", 8e3),
    (parse_bandwidth, "12.5MB/s", 1e8),
    (parse_bandwidth, "1GB/s", 8e9),
    # number
    (parse_number, 3, 3.0),
    (parse_number, -0.25, -0.25),
    (parse_number, "1e-3", 1e-3),
    (parse_number, " 7 ", 7.0),
]


@pytest.mark.parametrize("parser,value,expected", GOOD)
def test_good_values(parser, value, expected):
    result = parser(value, "k")
    assert type(result) is float
    assert result == pytest.approx(expected, rel=1e-12)


BAD = [
    # (parser, value, regex the message must match)
    (parse_duration, "20 parsecs", r"got '20 parsecs'; unknown unit 'parsecs'.*a duration like"),
    (parse_duration, "20MB", r"unknown unit 'MB'"),
    (parse_duration, "20MS", r"unknown unit 'MS'"),  # units are case-sensitive
    (parse_duration, "ms", r"got 'ms'; expected a duration"),
    (parse_duration, "", r"got ''; expected a duration"),
    (parse_duration, True, r"got True; expected a duration"),
    (parse_duration, False, r"got False"),
    (parse_duration, None, r"got None"),
    (parse_duration, [1], r"got \[1\]"),
    (parse_duration, "nan", r"got 'nan'"),
    (parse_duration, "inf", r"got 'inf'"),
    (parse_duration, "-infms", r"got '-infms'"),
    (parse_duration, float("nan"), r"finite"),
    (parse_duration, float("inf"), r"finite"),
    (parse_duration, "1e400", r"too large"),
    (parse_duration, "5 m s", r"unknown unit 'm s'"),
    (parse_size, "1e308GB", r"too large"),
    (parse_size, "4kib", r"unknown unit 'kib'.*a size like"),
    (parse_size, "10Mb", r"unknown unit 'Mb'"),  # bits are not a size
    (parse_rate, "800/fortnight", r"unknown unit '/fortnight'.*a rate like"),
    (parse_rate, "800s", r"unknown unit 's'"),
    (parse_bandwidth, "100MBps", r"unknown unit 'MBps'.*a bandwidth like"),
    (parse_bandwidth, "100Mb/s", r"unknown unit 'Mb/s'"),
    (parse_number, "5ms", r"got '5ms'; unknown unit 'ms'.*a plain number"),
    (parse_number, "five", r"got 'five'; expected a plain number"),
    (parse_number, True, r"got True; expected a plain number"),
]


@pytest.mark.parametrize("parser,value,pattern", BAD)
def test_bad_values(parser, value, pattern):
    with pytest.raises(ConfigError, match=pattern) as info:
        parser(value, "network.latency")
    assert info.value.key == "network.latency"
    assert str(info.value).startswith("network.latency: got ")


def test_error_message_is_complete():
    with pytest.raises(ConfigError) as info:
        parse_duration("20 parsecs", "network.latency")
    assert str(info.value) == (
        "network.latency: got '20 parsecs'; unknown unit 'parsecs', expected "
        + UNIT_HELP["duration"]
    )
    assert "a bare number means seconds" in str(info.value)


def test_tables_cover_every_kind():
    assert set(PARSERS) == {"duration", "size", "rate", "bandwidth", "number"}
    assert set(UNIT_HELP) == set(PARSERS)
    for kind, parser in PARSERS.items():
        assert parser("2", kind) == 2.0  # bare number in base units


def test_numpy_scalars_are_numbers():
    np = pytest.importorskip("numpy")
    assert parse_duration(np.float64(0.5), "k") == 0.5
    assert parse_size(np.int64(3), "k") == 3.0
    assert not math.isnan(parse_rate(np.float32(2.0), "k"))
