"""Short and long polling behind a topology (see :mod:`.clustered` for the
shared parts and docs/topologies.md for what a crash means per pattern)."""

from __future__ import annotations

from commsim.engine.simulation import call_later
from commsim.network import Message
from commsim.nodes.cluster import Guarded, NoCpu
from commsim.patterns.notifications.base import SERVER
from commsim.patterns.notifications.clustered import _ClusterParts


class ClusteredPolling(_ClusterParts):
    """Mixin over :class:`.ShortPolling` (see the module docstring).

    * A client's kept-alive connection is pinned to the instance the
      balancer picks for its first poll (or its handshake); every later poll
      on it goes there.  ``network.keepalive: false`` is refused with a
      topology (a connection per poll is not routed here).
    * A crash resets the connections pinned to the instance.  Polls in
      flight to it, queued or running on its CPU are lost (no response);
      short-polling clients poll on schedule whether or not answered, so the
      next poll, on a new connection through the balancer (with its
      handshake and TLS CPU on a survivor), brings what the lost one would
      have: the updates it had taken go back to the client's pending list
      (updates live outside the instance).  Nothing is missed; the lost
      poll's updates wait up to one more interval.  ``reconnects`` stays 0
      (a polling client has no stream to re-open); ``crash_resets`` counts
      the connections reset.
    * If no instance is up, a poll gets no answer (the connection attempt
      fails) and the next poll tries again.
    * Approximation: a handshake in progress at the crash that completes
      (its TLS job was already running) leaves the client's connection
      marked open, so its next poll reuses it without a new handshake.
    """

    def __init__(self, sim):
        super().__init__(sim)
        self._build_cluster()
        self.pinned: list = [None] * self.n
        self.reset_at = [-1.0] * self.n
        self._guards = {}
        self._nocpu = NoCpu()
        self.connector.cpu_of = self._cpu_of

    def _guard(self, s):
        g = self._guards.get(s)
        if g is None:
            g = self._guards[s] = Guarded(s, self._poll_lost)
        return g

    def _pin(self, c: int):
        s = self.pinned[c]
        if s is None:
            s = self.cluster.pick(c)
            if s is not None:
                s.active += 1
                self.pinned[c] = s
        return s

    def _cpu_of(self, c: int):
        s = self._pin(c)
        return s.cpu if s is not None else self._nocpu

    def _server_poll(self, msg) -> None:
        c = msg.src
        if msg.created < self.reset_at[c]:
            return  # sent on a connection a crash reset: lost
        s = self._pin(c)
        if s is None:
            return  # nothing up: no answer
        cpu = self.cpu
        self.cpu = self._guard(s)
        try:
            super()._server_poll(msg)
        finally:
            self.cpu = cpu

    def _poll_lost(self, token) -> None:
        if isinstance(token, tuple):  # (client, items taken, sent): put the items back
            c, items = token[0], token[1]
            p = self.pending[c]
            self.pending[c] = list(items) + p if p else list(items)

    def _idle_closed(self, c: int) -> None:
        """network.idle_timeout closed the client's connection: its next poll
        opens a new one, routed by the balancer again."""
        super()._idle_closed(c)
        if self.pinned[c] is not None:
            self.pinned[c].active -= 1
            self.pinned[c] = None

    def _availability(self, c: int, online: bool) -> None:
        super()._availability(c, online)
        if not online and self.pinned[c] is not None:
            self.pinned[c].active -= 1
            self.pinned[c] = None

    def _server_crashed(self, s) -> None:
        now = self.env.now
        counted = now >= self.sim.start
        conn_open = getattr(self, "conn_open", None)  # short polling's kept-alive connections
        for c in range(self.n):
            if self.pinned[c] is not s:
                continue
            self.pinned[c] = None
            self.reset_at[c] = now
            if conn_open is not None and conn_open[c]:
                conn_open[c] = 0
                self._conn(-1)
            if self.handshakes:
                self.connector.close(c)
            if counted:
                self.crash_resets += 1
        s.active = 0
        for token in self._guard(s).drop_queued():
            self._poll_lost(token)


class ClusteredLongPolling(ClusteredPolling):
    """Mixin over :class:`.LongPolling`: as :class:`ClusteredPolling`, plus
    what a crash does to a poll that waits for its answer.

    * A client whose poll is outstanding on the crashed instance (held,
      queued in its CPU, in flight to it) is reset: it learns of it by a
      zero-byte close on the down link (its connection's RST) and re-polls
      after a uniform [0, ``topology.reconnect_jitter``] through the
      balancer, on a new connection (handshake on a survivor).  A response
      already on the wire still arrives and delivers its updates; the
      client then does not poll twice (the reset is ignored if it already
      re-polled, and a stale response after the re-poll does not start a
      second poll).
    * Updates taken by a response lost in the crashed CPU go back to pending
      (nothing is missed).  ``reconnects`` counts the re-polls after a reset.
    """

    def __init__(self, sim):
        super().__init__(sim)
        t = self._t
        jitter = t["reconnect_jitter"]
        self._jitter = (sim.sampler({"dist": "uniform", "low": 0, "high": jitter},
                                    "topology/reconnect_jitter") if jitter > 0 else None)
        self._stale = False

    def _server_crashed(self, s) -> None:
        now = self.env.now
        victims = [c for c in range(self.n) if self.pinned[c] is s and self.outstanding[c]]
        for c in victims:
            if self.held[c]:
                self.held[c] = 0
                self._conn(-1)
        super()._server_crashed(s)
        for c in victims:
            self.down.send_ordered(Message("close", SERVER, c, created=now, label="reset"),
                                   self._client_reset, c)

    def _availability(self, c: int, online: bool) -> None:
        # Going offline closes the client's connection but not its held poll:
        # the server does not notice (as without a topology), so the poll
        # stays pinned to its instance until answered (the answer is lost).
        super(ClusteredPolling, self)._availability(c, online)

    def _client_reset(self, msg) -> None:
        c = msg.dst
        if self.poll_sent[c] > msg.created or not self.outstanding[c]:
            return  # it already re-polled (a response got through first)
        self.outstanding[c] = 0
        if self.online[c]:
            delay = self._jitter() if self._jitter is not None else 0.0
            call_later(self.env, delay, self._repoll, c)

    def _repoll(self, event) -> None:
        c = event.value
        if self.online[c] and not self.outstanding[c]:
            if self.env.now >= self.sim.start:
                self.reconnects += 1
            self.attempts_total += 1
            self._send_poll(c)

    def _client_items(self, msg) -> None:
        self._stale = msg.created < self.reset_at[msg.dst] <= self.poll_sent[msg.dst]
        super()._client_items(msg)

    def _client_empty(self, msg) -> None:
        self._stale = msg.created < self.reset_at[msg.dst] <= self.poll_sent[msg.dst]
        super()._client_empty(msg)

    def _after_response(self, c: int) -> None:
        if self._stale:  # the answer to a poll a crash reset; the client re-polled already
            self._stale = False
            return
        super()._after_response(c)

    def _server_poll(self, msg) -> None:
        c = msg.src
        if msg.created >= self.reset_at[c] and self._pin(c) is None:
            # Nothing up: the connection is refused; the client tries again
            # after topology.reconnect_backoff.
            self.outstanding[c] = 0
            call_later(self.env, self._t["reconnect_backoff"], self._repoll, c)
            return
        super()._server_poll(msg)

    def _respond(self, c: int, items, purpose: str = "poll") -> None:
        # Answers also start outside _server_poll (a release at an update, a
        # timeout): always on the client's instance, under its epoch guard.
        s = self.pinned[c]
        if s is None:  # reset meanwhile: the answer's updates stay pending
            if items is not None:
                self._poll_lost((c, items, 0.0))
            return
        cpu = self.cpu
        self.cpu = self._guard(s)
        try:
            super()._respond(c, items, purpose)
        finally:
            self.cpu = cpu
