"""Reproducible random streams: one independent stream per purpose.

Design (common random numbers)
------------------------------
An experiment runs several *sweep points* (configurations being compared),
each for several *replications*.  Two rules make comparisons sharp:

1. **Replications are independent.**  :func:`derive_run_seed` maps
   ``(base_seed, replication)`` through :class:`numpy.random.SeedSequence`
   to a 63-bit run seed.  The sweep point is deliberately *not* an input, so
   replication ``r`` of every sweep point gets the same run seed: the
   compared configurations see common random numbers (CRN), and differences
   between them are not drowned in sampling noise.

2. **Each purpose draws from its own stream.**  :class:`Streams` derives one
   :class:`numpy.random.Generator` per *name* (e.g. ``"arrivals"``,
   ``"server.service_time"``) from ``SeedSequence(entropy=run_seed,
   spawn_key=(crc32(name),))``.  A stream depends only on the run seed and
   its name, not on which other streams exist or the order they were asked
   for.  So adding a retry policy, a new component, or extra draws in one
   place does not reshuffle the arrival sequence elsewhere; the workload stays
   identical across configurations that differ only downstream.

Assumptions: stream names are stable identifiers (renaming a component
changes its stream), and distinct names used within one run have distinct
CRC-32 values; a collision would silently make two streams identical, so
:meth:`Streams.generator` raises :class:`ValueError` if it sees one.
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["derive_run_seed", "Streams"]

_SEED_MASK = (1 << 63) - 1


def _check_seed(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"{what} must be non-negative, got {value!r}")
    return int(value)


def derive_run_seed(base_seed: int, replication: int) -> int:
    """Return the seed of replication ``replication`` of an experiment.

    The result is a non-negative 63-bit int, built from two 32-bit words of
    ``SeedSequence([base_seed, replication])``.  It differs (with
    overwhelming probability) between replications and is the same for every
    sweep point, which is what gives common random numbers across them.
    Both arguments must be non-negative ints.
    """
    base = _check_seed(base_seed, "base_seed")
    rep = _check_seed(replication, "replication")
    hi, lo = np.random.SeedSequence([base, rep]).generate_state(2, np.uint32)
    return ((int(hi) << 32) | int(lo)) & _SEED_MASK


class Streams:
    """Named, independent random generators for one simulation run.

    ``Streams(run_seed).generator(name)`` returns a PCG64-backed
    :class:`numpy.random.Generator` seeded from
    ``SeedSequence(entropy=run_seed, spawn_key=(zlib.crc32(name),))``.
    Asking again for the same name returns the *same* Generator object (so
    its state carries on); the first draw of a stream never depends on which
    other names were requested before it.
    """

    def __init__(self, run_seed: int):
        self.seed: int = _check_seed(run_seed, "run_seed")
        self._generators: dict[str, np.random.Generator] = {}
        self._names_by_crc: dict[int, str] = {}

    def generator(self, name: str) -> np.random.Generator:
        """Return the generator for ``name``, creating it on first use."""
        gen = self._generators.get(name)
        if gen is not None:
            return gen
        if not isinstance(name, str) or not name:
            raise ValueError(f"stream name must be a non-empty str, got {name!r}")
        crc = zlib.crc32(name.encode("utf-8"))
        other = self._names_by_crc.get(crc)
        if other is not None:
            raise ValueError(
                f"stream names {other!r} and {name!r} have the same CRC-32; "
                "rename one of them"
            )
        seq = np.random.SeedSequence(entropy=self.seed, spawn_key=(crc,))
        gen = np.random.Generator(np.random.PCG64(seq))
        self._names_by_crc[crc] = name
        self._generators[name] = gen
        return gen

    def __repr__(self) -> str:
        return f"Streams(seed={self.seed}, names={sorted(self._generators)})"
