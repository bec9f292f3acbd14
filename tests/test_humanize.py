"""Human units for tables, screen and reports (commsim/humanize.py)."""

from __future__ import annotations

import math

from commsim import humanize as h
from commsim.config import load


def test_numbers():
    assert h.number(16384.0) == "16,384" and h.number(16384.0, grouping=False) == "16384"
    assert h.number(3.0) == "3" and h.number(0.0347123) == "0.0347" and h.number(math.nan) == "–"
    assert h.number(1234.5) == "1234" or h.number(1234.5) == "1235"
    assert h.number(2.5e-6) == "2.50e-06"


def test_quantities_in_human_units():
    assert h.quantity(0.0347, "s", 0.0012) == "34.7 ± 1.2 ms"
    assert h.quantity(250e-6, "s") == "250 µs"
    assert h.quantity(1.5e6, "B/s") == "12 Mbit/s"     # bytes per second shown as a bit rate
    assert h.quantity(4096, "B") == "4 KiB"
    assert h.quantity(0.5, "fraction") == "50%"
    assert h.quantity(12, "1") == "12"


def test_a_column_shares_one_unit():
    cells, label = h.column([0.002, 0.010, 0.300], "s")
    assert label == "ms" and cells == ["2", "10", "300"]


def test_swept_values_as_written():
    exp = load({"name": "x", "pattern": "request_response", "sweep": {
        "request_response.chunk_size": [16384, "64KiB"], "clients.rate": ["10/s", 2.5],
        "network.latency": [0.04]}})
    w = h.written_values(exp)
    assert h.param("request_response.chunk_size", 16384.0, w) == "16384"
    assert h.param("request_response.chunk_size", 65536.0, w) == "64KiB"
    assert h.param("clients.rate", 10.0, w) == "10/s"
    assert h.param("clients.rate", 2.5, w) == "2.5/s"
    assert h.param("network.latency", 0.04, w) == "40ms"
    assert h.param("network.bandwidth", 1e8) == "100Mbps"
