"""A load balancer: picks one backend among several for each request.

Model and assumptions
---------------------
The balancer only decides *where* a request goes; it has no CPU and no
queue of its own (a real L7 balancer is assumed sized so that it is never
the bottleneck).  A backend is any object with

* ``index`` (a stable int, used for tie-breaking and hashing),
* ``routable`` (bool: the balancer's *view* of the backend: it may still
  think a crashed backend is up until its health check notices),
* ``active`` (int: requests sent to it and not yet answered).

Policies (``POLICIES``):

``round_robin``
    the next routable backend in turn.
``least_connections``
    the routable backend with the fewest ``active`` requests; ties go to
    the first one at or after the round-robin pointer (so ties rotate).
``random``
    a uniformly random routable backend (needs a random stream).
``consistent_hash``
    a hash ring with ``vnodes`` virtual nodes per backend (Karger et al.,
    STOC 1997); a key goes to the first routable backend clockwise of its
    hash.  Adding a backend moves only about 1/N of the keys; a backend that
    is down sends its keys to its ring successors until it returns.
``sticky``
    session affinity (a cookie naming the backend): the first request of a
    key is placed round robin and every later one goes to the same backend
    while it is routable; if it is not, the key is placed again.

Any policy accepts an extra filter ``ok(backend) -> bool`` (e.g. a circuit
breaker's ejections).  If no backend is routable (and ok), ``pick`` returns
``None`` (the caller answers 503).  Hashing uses BLAKE2b of ``"<index>#<v>"``
and of the key's ``repr``: deterministic across runs and machines.
"""

from __future__ import annotations

import bisect
import hashlib
from typing import Callable

POLICIES = ("round_robin", "least_connections", "random", "consistent_hash", "sticky")


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class LoadBalancer:
    """Chooses a backend per request according to ``policy``."""

    def __init__(self, policy: str, backends=(), uniform: Callable[[], float] | None = None,
                 vnodes: int = 64):
        if policy not in POLICIES:
            raise ValueError(f"unknown load-balancing policy {policy!r}; expected one of {POLICIES}")
        if policy == "random" and uniform is None:
            raise ValueError("the random policy needs a uniform sampler")
        self.policy = policy
        self.backends: list = []
        self._uniform = uniform
        self._vnodes = vnodes
        self._rr = 0
        self._ring_keys: list[int] = []
        self._ring: list = []
        self._hash_cache: dict = {}
        self.affinity: dict = {}
        for b in backends:
            self.add(b)

    # ------------------------------------------------------------------
    def add(self, backend) -> None:
        """Add a backend (scale-out).  It starts with no affinity entries."""
        self.backends.append(backend)
        if self.policy == "consistent_hash":
            for v in range(self._vnodes):
                h = _hash(f"{backend.index}#{v}")
                i = bisect.bisect(self._ring_keys, h)
                self._ring_keys.insert(i, h)
                self._ring.insert(i, backend)

    def pick(self, key=None, ok: Callable | None = None):
        """The backend for a request with ``key`` (a client or session id)."""
        policy = self.policy
        if policy == "round_robin":
            return self._round_robin(ok)
        if policy == "least_connections":
            return self._least(ok)
        if policy == "random":
            return self._random(ok)
        if policy == "consistent_hash":
            return self._hashed(key, ok)
        # sticky
        b = self.affinity.get(key)
        if b is not None and b.routable and (ok is None or ok(b)):
            return b
        b = self._round_robin(ok)
        if b is not None:
            self.affinity[key] = b
        return b

    # ------------------------------------------------------------------
    def _round_robin(self, ok):
        backends = self.backends
        n = len(backends)
        for step in range(n):
            b = backends[(self._rr + step) % n]
            if b.routable and (ok is None or ok(b)):
                self._rr = (self._rr + step + 1) % n
                return b
        return None

    def _least(self, ok):
        backends = self.backends
        n = len(backends)
        best = None
        start = self._rr
        for step in range(n):
            b = backends[(start + step) % n]
            if b.routable and (ok is None or ok(b)) and (best is None or b.active < best.active):
                best = b
        if best is not None:
            self._rr = (start + 1) % n
        return best

    def _random(self, ok):
        cands = [b for b in self.backends if b.routable and (ok is None or ok(b))]
        if not cands:
            return None
        i = int(self._uniform() * len(cands))
        return cands[i if i < len(cands) else len(cands) - 1]

    def _hashed(self, key, ok):
        h = self._hash_cache.get(key)
        if h is None:
            h = self._hash_cache[key] = _hash(repr(key))
        ring = self._ring
        n = len(ring)
        if n == 0:
            return None
        i = bisect.bisect(self._ring_keys, h)
        for step in range(n):
            b = ring[(i + step) % n]
            if b.routable and (ok is None or ok(b)):
                return b
        return None

    def owner(self, key):
        """The backend the ring assigns ``key`` to ignoring health (tests, figures)."""
        if self.policy != "consistent_hash":
            raise ValueError("owner() is defined for consistent_hash only")
        i = bisect.bisect(self._ring_keys, _hash(repr(key)))
        return self._ring[i % len(self._ring)]
