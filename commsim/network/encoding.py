"""Body encodings: how big a body is on the wire and what parsing it costs.

Body sizes in configs are written as the size of the data *encoded as JSON*;
an encoding scales that by ``size_factor`` and costs ``cpu_per_kb`` seconds of
CPU per KiB of encoded body on each end (serialise at the sender, parse at the
receiver).

Presets (overridable with ``request_response.size_factor`` and
``request_response.parse_cpu_per_kb``):

========  ===========  ===========  ======================================
encoding  size_factor  cpu_per_kb   basis
========  ===========  ===========  ======================================
none      1.0          0            bytes as given, no parse cost
json      1.0          10 us        ~100 MB/s, a mainstream DOM parser
                                    (Langdale & Lemire, "Parsing gigabytes
                                    of JSON per second", VLDB J. 2019,
                                    measure the fastest at ~1-2 GB/s and
                                    common libraries an order below)
xml       1.6          40 us        Google's Protocol Buffers overview:
protobuf  0.4          1 us         protobuf is "3 to 10 times smaller"
                                    and "20 to 100 times faster" than XML;
                                    the presets sit at 4x and 40x
========  ===========  ===========  ======================================

These are teaching presets for relative comparisons, not measurements of a
particular library: override them with your own profile.
"""

from __future__ import annotations

PRESETS: dict[str, tuple[float, float]] = {
    "none": (1.0, 0.0),
    "json": (1.0, 10e-6),
    "xml": (1.6, 40e-6),
    "protobuf": (0.4, 1e-6),
}


class Encoding:
    """Size factor and CPU cost of one encoding."""

    __slots__ = ("name", "size_factor", "cpu_per_kb")

    def __init__(self, name: str, size_factor: float | None = None, cpu_per_kb: float | None = None):
        preset_size, preset_cpu = PRESETS[name]
        self.name = name
        self.size_factor = preset_size if size_factor is None else size_factor
        self.cpu_per_kb = preset_cpu if cpu_per_kb is None else cpu_per_kb

    def encoded_size(self, json_bytes: float) -> int:
        return int(round(json_bytes * self.size_factor))

    def cpu(self, encoded_bytes: float) -> float:
        """CPU seconds to serialise or parse ``encoded_bytes``."""
        return encoded_bytes / 1024.0 * self.cpu_per_kb
